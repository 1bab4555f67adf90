// The music panel: tracks for the mood of a photo or of a webcam minute (when the server has a catalogue).
import { el } from "./ui.js";

export function showMusic(recommendation, when) {
  const panel = document.getElementById("music");
  if (!recommendation) {
    panel.hidden = true;
    return;
  }
  document.getElementById("music-reason").textContent = `${when}: ${recommendation.reason}`;
  document.getElementById("tracks").replaceChildren(...recommendation.tracks.map((track) =>
    el("li", {}, el("a", { href: track.url, target: "_blank", rel: "noopener noreferrer" }, `${track.artist} – ${track.title}`))));
  panel.hidden = false;
}

export function hideMusic() {
  document.getElementById("music").hidden = true;
}
