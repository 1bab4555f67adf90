// The page: three tabs (a photo, the live webcam, a video) on the server's /api, and what the model is.
import { call, takeToken } from "./api.js";
import { hideMusic } from "./music.js";
import { setupPhoto } from "./photo.js";
import { setupVideo } from "./video.js";
import { setupWebcam } from "./webcam.js";
import { showMessage } from "./ui.js";

function tabs(webcam) {
  const pairs = [["tab-photo", "photo-panel"], ["tab-webcam", "webcam-panel"], ["tab-video", "video-panel"]];
  for (const [tab, panel] of pairs) {
    document.getElementById(tab).addEventListener("click", () => {
      for (const [otherTab, otherPanel] of pairs) {
        document.getElementById(otherTab).setAttribute("aria-selected", String(otherTab === tab));
        document.getElementById(otherPanel).hidden = otherPanel !== panel;
      }
      if (tab !== "tab-webcam") webcam.stop();
      if (tab !== "tab-video") document.getElementById("video-out").pause();
      hideMusic(); // the music was for the other tab's photo, minute or video
    });
  }
}

function about(info) {
  const data = info.training_data || {};
  const datasets = Object.keys(data.datasets || {}).join(", ");
  const score = info.model.cv_balanced_accuracy;
  document.getElementById("about").textContent =
    `Model ${info.file}: ${info.model.description || info.model.model || "?"}; classes ${info.labels.join(", ")}` +
    (data.n_faces ? `; trained on ${data.n_faces.toLocaleString("en")} faces (${datasets})` : "") +
    (score ? `; cross-validated balanced accuracy ${(score * 100).toFixed(1)}%` : "") +
    (data.terms ? `. ${data.terms}` : ".");
}

async function main() {
  takeToken();
  let info;
  try {
    info = await call("/api/model");
  } catch (error) {
    showMessage(error.message.charAt(0).toUpperCase() + error.message.slice(1));
    return;
  }
  about(info);
  setupPhoto(info);
  setupVideo(info);
  tabs(setupWebcam(info));
  document.body.dataset.ready = "true";
}

// The address with the token pasted into a page already open changes only the fragment: start again.
window.addEventListener("hashchange", () => /token=/.test(location.hash) && location.reload());
main();
