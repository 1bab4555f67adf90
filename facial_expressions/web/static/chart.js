// A rolling line chart of the last minute: one line per class, its probability on the largest face.
// Hand-drawn on a canvas (no library); a frame without a face leaves a gap.
import { classColour, el } from "./ui.js";

export class RollingChart {
  constructor(canvas, legend, labels, seconds = 60) {
    this.canvas = canvas;
    this.labels = labels;
    this.span = seconds * 1000;
    this.samples = [];
    legend.replaceChildren(...labels.map((label) => el("span", {}, el("i", { style: { background: classColour(label, labels) } }), label)));
  }

  add(time, probabilities) {
    this.samples.push({ time, probabilities });
    while (this.samples.length && this.samples[0].time < time - this.span) this.samples.shift();
  }

  clear() {
    this.samples = [];
    this.draw(performance.now());
  }

  draw(now) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(300, Math.round(canvas.clientWidth * ratio));
    const height = Math.round(width / 3);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    const font = Math.round(11 * ratio);
    const left = font * 3;
    const bottom = font * 2;
    const plotW = width - left - font;
    const plotH = height - bottom - font;
    const xOf = (time) => left + plotW * (1 - (now - time) / this.span);
    const yOf = (p) => font + plotH * (1 - p);
    ctx.clearRect(0, 0, width, height);
    ctx.font = `${font}px system-ui, sans-serif`;
    ctx.fillStyle = "#5b6474";
    ctx.strokeStyle = "#d8dde6";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const p of [0, 0.5, 1]) {
      ctx.beginPath();
      ctx.moveTo(left, yOf(p));
      ctx.lineTo(left + plotW, yOf(p));
      ctx.stroke();
      ctx.fillText(`${p * 100}%`, left - font * 0.4, yOf(p));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let s = 60; s >= 0; s -= 15) {
      ctx.fillText(s ? `−${s} s` : "now", left + plotW * (1 - s / 60), font + plotH + font * 0.5);
    }
    ctx.lineWidth = 2 * ratio;
    for (const label of this.labels) {
      ctx.strokeStyle = classColour(label, this.labels);
      ctx.beginPath();
      let drawing = false;
      for (const { time, probabilities } of this.samples) {
        if (!probabilities) {
          drawing = false;
          continue;
        }
        const x = xOf(time);
        const y = yOf(probabilities[label] || 0);
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        drawing = true;
      }
      ctx.stroke();
    }
  }
}
