// The webcam tab: the browser's camera, frames sent to the server as JPEG, the answer drawn here.
//
// One frame is in flight at a time: the next is taken when the answer is in (at most 15 frames/s);
// the camera's frames in between are dropped, never queued, so the overlay is always about the
// latest frame. Frames are sent at most
// 480 px wide (faces in a webcam are large; smaller frames are faster to send and to analyse).
// The chart keeps the last minute; after each period (a minute unless `serve --music-every` says
// otherwise) the music panel gets tracks for that period's average mood (when the server has a
// catalogue).
import { call } from "./api.js";
import { RollingChart } from "./chart.js";
import { drawFaces } from "./draw.js";
import { showMusic } from "./music.js";
import { clearMessage, percent, showMessage } from "./ui.js";

const INTERVAL_MS = 1000 / 15;
const SEND_WIDTH = 480;

export function setupWebcam(info) {
  const video = document.getElementById("video");
  const overlay = document.getElementById("overlay");
  const startButton = document.getElementById("cam-start");
  const stopButton = document.getElementById("cam-stop");
  const status = document.getElementById("cam-status");
  const liveLabel = document.getElementById("live-label");
  const chart = new RollingChart(document.getElementById("chart"), document.getElementById("legend"), info.labels);
  const frame = document.createElement("canvas");
  let stream = null;
  let running = false;
  let sent = [];
  let minute = null;
  const periodMs = (info.music_every || 60) * 1000;
  const periodText = periodMs === 60000 ? "minute" : `${Math.round(periodMs / 1000)} seconds`;

  async function start() {
    clearMessage();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showMessage("This browser gives no camera to this page (cameras need https, or localhost).");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (error) {
      showMessage(`No camera: ${error.message || error.name}`);
      return;
    }
    video.srcObject = stream;
    document.getElementById("live-stage").hidden = false;
    await video.play();
    startButton.disabled = true;
    stopButton.disabled = false;
    chart.clear();
    sent = [];
    minute = { start: performance.now(), moods: [] };
    running = true;
    loop();
  }

  function stop() {
    if (!running && !stream) return;
    running = false;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    document.getElementById("live-stage").hidden = true;
    startButton.disabled = false;
    stopButton.disabled = true;
    status.textContent = "Stopped.";
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  }

  async function loop() {
    while (running) {
      const began = performance.now();
      if (video.readyState >= 2 && video.videoWidth) await sendFrame(began);
      const wait = INTERVAL_MS - (performance.now() - began);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    }
  }

  async function sendFrame(began) {
    const scale = Math.min(1, SEND_WIDTH / video.videoWidth);
    frame.width = Math.round(video.videoWidth * scale);
    frame.height = Math.round(video.videoHeight * scale);
    frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
    const blob = await new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.85));
    await send(blob, scale, began);
  }

  async function send(blob, scale, began) {
    const form = new FormData();
    form.append("file", blob, "frame.jpg");
    try {
      const result = await call("/api/analyze", { method: "POST", body: form });
      if (running) show(result, scale, began);
    } catch (error) {
      if (error.status === 503) {
        status.textContent = "The server is busy: skipping frames.";
      } else {
        showMessage(`Webcam: ${error.message}`);
        if (error.status === 401 || error.status === 0) stop();
      }
    }
  }

  function show(result, scale, began) {
    const now = performance.now();
    sent.push(now);
    while (sent.length && sent[0] < now - 3000) sent.shift();
    overlay.width = video.videoWidth;
    overlay.height = video.videoHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    drawFaces(ctx, result.faces, 1 / scale, info.drawing);
    const face = result.faces[0];
    liveLabel.textContent = face ? `${face.label} ${percent(face.probabilities[face.label])}` : "no face";
    liveLabel.dataset.label = face ? face.label : "";
    chart.add(now, face ? face.probabilities : null);
    chart.draw(now);
    const rate = sent.length > 1 ? (sent.length - 1) / ((now - sent[0]) / 1000) : 0;
    status.textContent = `${rate.toFixed(1)} frames/s · ${Math.round(now - began)} ms per frame`;
    if (face && face.valence !== undefined) minute.moods.push(face);
    if (now - minute.start >= periodMs) minuteDone(now);
  }

  async function minuteDone(now) {
    const moods = minute.moods;
    minute = { start: now, moods: [] };
    if (!info.catalogue || !moods.length) return;
    const mean = (key) => moods.reduce((sum, face) => sum + face[key], 0) / moods.length;
    const counts = {};
    for (const face of moods) counts[face.label] = (counts[face.label] || 0) + 1;
    const label = Object.keys(counts).sort((a, b) => counts[b] - counts[a])[0];
    try {
      const recommendation = await call("/api/recommend", { method: "POST", json: { valence: mean("valence"), arousal: mean("arousal"), label } });
      showMusic(recommendation, `For the last webcam ${periodText}`);
    } catch (error) {
      showMessage(`Music: ${error.message}`);
    }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  return { stop, chart };
}
