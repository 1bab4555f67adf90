// A rolling line chart of the last minute: one line per class, its probability on the largest face.
// Hand-drawn on a canvas (no library); a frame without a face leaves a gap.
import { classColour, el } from "./ui.js";

//: Size `canvas` to its displayed width (at the screen's pixel ratio, at least 300 px) and
//: width / aspect high: its context, size and a font size in those pixels.
function fitCanvas(canvas, aspect) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(300, Math.round(canvas.clientWidth * ratio));
  const height = Math.round(width / aspect);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return { ctx: canvas.getContext("2d"), width, height, ratio, font: Math.round(11 * ratio) };
}

//: Clear the canvas and draw the 0, 50 and 100% grid lines with their labels, in the charts' style;
//: leaves the context ready for the time labels (centred, below).
function probabilityAxis(ctx, width, height, font, left, plotW, yOf) {
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
}

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
    const { ctx, width, height, ratio, font } = fitCanvas(this.canvas, 3);
    const left = font * 3;
    const bottom = font * 2;
    const plotW = width - left - font;
    const plotH = height - bottom - font;
    const xOf = (time) => left + plotW * (1 - (now - time) / this.span);
    const yOf = (p) => font + plotH * (1 - p);
    probabilityAxis(ctx, width, height, font, left, plotW, yOf);
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

// A whole video's timeline for one face: each class's probability against time in seconds, with a
// line where the video is playing; a click on the chart asks to seek there (onSeek(seconds)).
export class TimelineChart {
  constructor(canvas, legend, labels, onSeek) {
    this.canvas = canvas;
    this.labels = labels;
    this.series = { time: [], probabilities: [] };
    this.duration = 1;
    this.now = null;
    legend.replaceChildren(...labels.map((label) => el("span", {}, el("i", { style: { background: classColour(label, labels) } }), label)));
    canvas.addEventListener("click", (event) => {
      if (!this.layout) return;
      const { left, plotW } = this.layout;
      const x = (event.offsetX * this.canvas.width) / this.canvas.clientWidth;
      onSeek(Math.max(0, Math.min(this.duration, ((x - left) / plotW) * this.duration)));
    });
  }

  show(series, duration) {
    this.series = series;
    this.duration = Math.max(duration || 0, series.time.length ? series.time[series.time.length - 1] : 0, 0.1);
    this.draw();
  }

  at(seconds) {
    this.now = seconds;
    this.draw();
  }

  draw() {
    const { ctx, width, height, ratio, font } = fitCanvas(this.canvas, 2.2);
    const left = font * 3;
    const plotW = width - left - font;
    const plotH = height - font * 3;
    this.layout = { left, plotW };
    const xOf = (t) => left + (plotW * t) / this.duration;
    const yOf = (p) => font + plotH * (1 - p);
    probabilityAxis(ctx, width, height, font, left, plotW, yOf);
    const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => this.duration / s <= 8) || 1200;
    for (let t = 0; t <= this.duration + 1e-6; t += step) ctx.fillText(`${+t.toFixed(1)} s`, xOf(t), font + plotH + font * 0.5);
    const { time, probabilities } = this.series;
    // a gap where the face was not seen: more than 3 median steps between two points
    const steps = time.slice(1).map((t, i) => t - time[i]).sort((a, b) => a - b);
    const gap = 3 * (steps[Math.floor(steps.length / 2)] || 1);
    ctx.lineWidth = 2 * ratio;
    this.labels.forEach((label, k) => {
      ctx.strokeStyle = classColour(label, this.labels);
      ctx.beginPath();
      time.forEach((t, i) => {
        if (i === 0 || t - time[i - 1] > gap) ctx.moveTo(xOf(t), yOf(probabilities[i][k]));
        else ctx.lineTo(xOf(t), yOf(probabilities[i][k]));
      });
      ctx.stroke();
    });
    if (this.now !== null) {
      ctx.strokeStyle = "#1d2330";
      ctx.lineWidth = ratio;
      ctx.beginPath();
      ctx.moveTo(xOf(this.now), font);
      ctx.lineTo(xOf(this.now), font + plotH);
      ctx.stroke();
    }
  }
}
