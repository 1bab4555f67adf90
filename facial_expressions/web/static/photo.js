// The photo tab: drop or pick a file; the server answers with every face, its reasons and a preview
// of the decoded photo (browsers cannot show TIFF), on which the faces are drawn.
import { call } from "./api.js";
import { drawFaces } from "./draw.js";
import { hideMusic, showMusic } from "./music.js";
import { acceptFiles, classColour, clearMessage, el, megabytes, percent, showMessage, signed } from "./ui.js";

//: The photo is drawn at least this large (small photos are enlarged, so dots stay legible).
const MIN_SIDE = 640;

export function setupPhoto(info) {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  document.getElementById("limit").textContent = `JPEG, PNG, TIFF, WebP, … up to ${megabytes(info.limits.max_upload_bytes)}`;
  acceptFiles(drop, input, (file) => analyse(file, info));
}

function reset() {
  document.getElementById("photo-canvas").hidden = true;
  document.getElementById("faces").replaceChildren();
  hideMusic();
}

async function analyse(file, info) {
  const status = document.getElementById("photo-status");
  clearMessage();
  reset();
  status.textContent = `Analysing ${file.name} …`;
  const options = new URLSearchParams({ explain: 3, preview: "true" });
  if (info.catalogue) options.set("recommend", "match");
  if (document.getElementById("age-gender").checked) options.set("age_gender", "true");
  const form = new FormData();
  form.append("file", file);
  let result;
  try {
    result = await call(`/api/analyze?${options}`, { method: "POST", body: form });
  } catch (error) {
    showMessage(`${file.name}: ${error.message}`);
    status.textContent = "";
    return;
  }
  await drawPhoto(result, info);
  const n = result.faces.length;
  status.textContent = n ? `${n} face${n > 1 ? "s" : ""} in ${file.name} (${result.seconds.toFixed(2)} s)` : `No face found in ${file.name}.`;
  document.getElementById("faces").replaceChildren(...result.faces.map((face, i) => faceCard(face, i, result, info)));
  showMusic(result.recommendation, `For ${file.name}`);
}

async function drawPhoto(result, info) {
  const image = new Image();
  image.src = result.preview;
  await image.decode();
  const canvas = document.getElementById("photo-canvas");
  const enlarge = Math.max(1, MIN_SIDE / Math.max(image.width, image.height));
  canvas.width = Math.round(image.width * enlarge);
  canvas.height = Math.round(image.height * enlarge);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  drawFaces(ctx, result.faces, canvas.width / result.image.width, info.drawing, result.part_colours || []);
  canvas.hidden = false;
}

function words(reasons) {
  return reasons.length ? reasons.map((r) => `${r.feature} ${signed(r.contribution)}`).join(", ") : "nothing notable";
}

function faceCard(face, i, result, info) {
  const labels = Object.keys(face.probabilities);
  const bars = el("div", { class: "bars" });
  for (const label of labels) {
    const p = face.probabilities[label];
    const top = label === face.label ? "top" : "";
    bars.append(el("span", { class: top }, label),
                el("div", { class: "bar" }, el("span", { style: { width: `${p * 100}%`, background: classColour(label, info.labels) } })),
                el("span", { class: `num ${top}` }, percent(p)));
  }
  const card = el("article", { class: "face" }, el("h3", {}, `Face ${i + 1}: ${face.label} ${percent(face.probabilities[face.label])}`), bars);
  if (face.age != null) {
    const [low, high] = face.age_range.map(Math.round);
    const sure = face.gender === "female" ? face.p_female : 1 - face.p_female;
    card.append(el("p", { class: "age-gender" },
      `apparent age ${Math.round(face.age)} (${low}–${high}), apparent gender ${face.gender} ${percent(sure)}`));
  }
  if (face.explanation) {
    const toward = face.explanation.filter((r) => r.contribution > 0);
    const against = face.explanation.filter((r) => r.contribution <= 0);
    card.append(el("ul", { class: "reasons" },
      el("li", { class: "toward" }, `for ${face.label}: ${words(toward)}`),
      el("li", { class: "against" }, `against: ${words(against)}`)));
    const parts = (result.parts || [])[i];
    if (parts) {
      card.append(el("div", { class: "parts", title: `face parts, in ${face.explanation_kind} units` },
        ...Object.entries(parts).map(([part, value]) =>
          el("span", { style: { background: value >= 0 ? "var(--good)" : "var(--bad)" } }, `${part} ${signed(value)}`))));
    }
  }
  return card;
}
