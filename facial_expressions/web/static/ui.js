// Small helpers the page shares: the message line, building elements, colours per class, numbers.

const CLASS_COLOURS = {
  angry: "#d62728", disgust: "#8c564b", fear: "#9467bd", happy: "#2ca02c", neutral: "#7f7f7f",
  sad: "#1f77b4", surprise: "#ff7f0e", contempt: "#e377c2", negative: "#d62728", positive: "#2ca02c",
};
const SPARE = ["#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39"];

export function classColour(label, labels) {
  return CLASS_COLOURS[label] || SPARE[Math.max(0, labels.indexOf(label)) % SPARE.length];
}

export function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = false;
}

export function clearMessage() {
  document.getElementById("message").hidden = true;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export const percent = (p) => `${Math.round(p * 100)}%`;
export const signed = (v) => (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2);
export const megabytes = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0)} MB`;

//: Call onFile(file) with a file picked from `input` or dropped on `drop` (highlighted while dragged over).
export function acceptFiles(drop, input, onFile) {
  input.addEventListener("change", () => input.files.length && onFile(input.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) onFile(event.dataTransfer.files[0]);
  });
}
