// The video tab: upload a video (with how much is sent), follow its analysis on the server (a
// progress bar), then the annotated video beside the timeline of a face, a card per face, the
// files, and music for the main face's mood (when the server has a catalogue).
import { call, fileUrl, upload } from "./api.js";
import { TimelineChart } from "./chart.js";
import { hideMusic, showMusic } from "./music.js";
import { acceptFiles, classColour, clearMessage, el, megabytes, percent, showMessage } from "./ui.js";

const POLL_MS = 500;
const seconds = (t) => `${t.toFixed(1)} s`;

export function setupVideo(info) {
  const drop = document.getElementById("video-drop");
  const input = document.getElementById("video-file");
  const player = document.getElementById("video-out");
  const chart = new TimelineChart(document.getElementById("video-chart"), document.getElementById("video-legend"),
                                  info.labels, (t) => { player.currentTime = t; });
  const state = { busy: false, chart, player, info };
  document.getElementById("video-limit").textContent =
    `MP4, MOV, WebM, MKV, AVI, … up to ${megabytes(info.limits.max_video_bytes)}`;
  player.addEventListener("timeupdate", () => chart.at(player.currentTime));
  player.addEventListener("seeked", () => chart.at(player.currentTime));
  window.addEventListener("resize", () => chart.draw());
  acceptFiles(drop, input, (file) => analyse(file, state));
}

function setProgress(fraction, text) {
  const bar = document.getElementById("video-progress");
  document.getElementById("video-progress-box").hidden = false;
  if (fraction === null || fraction === undefined) bar.removeAttribute("value");
  else bar.value = fraction;
  document.getElementById("video-status").textContent = text;
}

function reset(state) {
  document.getElementById("video-result").hidden = true;
  document.getElementById("video-faces").replaceChildren();
  document.getElementById("video-files").replaceChildren();
  state.player.removeAttribute("src");
  state.player.load();
  hideMusic();
}

async function analyse(file, state) {
  if (state.busy) return;
  state.busy = true;
  clearMessage();
  reset(state);
  const options = new URLSearchParams({ every: document.getElementById("video-every").value });
  if (state.info.catalogue) options.set("recommend", "match");
  const form = new FormData();
  form.append("file", file);
  try {
    setProgress(0, `Uploading ${file.name} …`);
    let job = await upload(`/api/videos?${options}`, form, (sent) => setProgress(sent, `Uploading ${file.name}: ${percent(sent)}`));
    while (job.status === "uploading" || job.status === "running") {
      const done = job.progress === null ? "" : ` ${percent(job.progress)}`;
      setProgress(job.progress, `Analysing ${file.name}:${done} (${job.frames_analysed} frames, ${seconds(job.seconds)})`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await call(`/api/videos/${job.id}`);
    }
    if (job.status === "failed") throw new Error(job.error.detail);
    setProgress(1, `${file.name}: ${job.summary.frames_analysed} frames analysed in ${seconds(job.summary.seconds)}` +
                   (job.stopped ? ` (${job.stopped})` : ""));
    await showResult(job, state);
  } catch (error) {
    document.getElementById("video-progress-box").hidden = true;
    // the server's messages about a video start with its name already
    showMessage(error.message.startsWith(file.name) ? error.message : `${file.name}: ${error.message}`);
  } finally {
    state.busy = false;
  }
}

async function showResult(job, state) {
  const { summary, timeline } = job;
  const ids = Object.keys(summary.faces);
  const duration = summary.source && summary.source.frame_count && summary.source.fps
    ? summary.source.frame_count / summary.source.fps : null;
  state.player.src = await fileUrl(job.files["annotated.mp4"]);
  document.getElementById("video-result").hidden = false;
  const pick = (id) => {
    document.getElementById("video-chart-face").textContent = id ? `face ${id}` : "no face found";
    state.chart.show(id ? timeline.faces[id] : { time: [], probabilities: [] }, duration);
    for (const card of document.querySelectorAll("#video-faces article")) card.classList.toggle("chosen", card.dataset.face === id);
  };
  const seek = (t) => { state.player.currentTime = t; };
  document.getElementById("video-faces").replaceChildren(...(ids.length
    ? ids.map((id) => faceCard(id, summary.faces[id], state.info, pick, seek, ids.length > 1))
    : [el("p", { class: "status" }, "No face was found in the frames analysed.")]));
  pick(job.main_face);
  document.getElementById("video-files").replaceChildren("Files: ", ...Object.entries(job.files).flatMap(([name, path], i) =>
    [i ? ", " : "", downloadLink(name, path)]));
  if (job.recommendation) showMusic(job.recommendation, `For face ${job.main_face} over ${job.name}`);
}

function downloadLink(name, path) {
  const link = el("a", { href: path, download: name }, name);
  link.addEventListener("click", async (event) => {
    if (link.dataset.ready) return;
    event.preventDefault();
    try {
      link.href = await fileUrl(path);
      link.dataset.ready = "true";
      link.click();
    } catch (error) {
      showMessage(error.message);
    }
  });
  return link;
}

function faceCard(id, face, info, pick, seek, several) {
  const labels = Object.keys(face.emotions);
  const bars = el("div", { class: "bars" });
  for (const label of labels) {
    const share = face.emotions[label].share_of_time;
    const top = label === face.dominant ? "top" : "";
    bars.append(el("span", { class: top }, label),
                el("div", { class: "bar" }, el("span", { style: { width: `${share * 100}%`, background: classColour(label, info.labels) } })),
                el("span", { class: `num ${top}` }, percent(share)));
  }
  const strongest = labels.filter((label) => face.emotions[label].strongest.probability >= 0.5)
    .sort((a, b) => face.emotions[b].strongest.probability - face.emotions[a].strongest.probability)
    .map((label) => {
      const moment = face.emotions[label].strongest;
      const button = el("button", { type: "button", class: "moment", title: "play from here" },
                        `${label} ${percent(moment.probability)} at ${seconds(moment.time_s)}`);
      button.addEventListener("click", () => seek(moment.time_s));
      return button;
    });
  const card = el("article", { class: "face", "data-face": id },
    el("h3", {}, `Face ${id}: mostly ${face.dominant} (mean ${percent(face.emotions[face.dominant].mean_probability)})`),
    el("p", { class: "seen" }, `Seen ${seconds(face.first_seen_s)} – ${seconds(face.last_seen_s)}, ${seconds(face.seconds_visible)} in view` +
       (face.mean_valence !== undefined ? `; valence ${face.mean_valence.toFixed(2)}, arousal ${face.mean_arousal.toFixed(2)}` : "")),
    el("p", { class: "caption" }, "Share of the time with each label:"), bars);
  if (strongest.length) card.append(el("div", { class: "moments" }, "Strongest moments: ", ...strongest));
  if (several) {
    const show = el("button", { type: "button" }, "Show in the chart");
    show.addEventListener("click", () => {
      pick(id);
      document.getElementById("video-result").scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
    card.append(show);
  }
  return card;
}
