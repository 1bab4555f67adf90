// Faces drawn over a photo or a video frame as `predict --annotate` draws them: a white box, the
// 68 dots and a box around each part in the part's colour (or, when explained, green for parts that
// pushed toward the label and red against, from the server), and the label above the box.

export function drawFaces(ctx, faces, scale, drawing, partColours = []) {
  const side = Math.min(ctx.canvas.width, ctx.canvas.height);
  const line = Math.max(2, Math.round(side / 250));
  faces.forEach((face, i) => {
    const colours = Object.assign({}, drawing.colours, partColours[i] || {});
    const [x, y, w, h] = face.box.map((v) => v * scale);
    ctx.lineWidth = line;
    ctx.strokeStyle = "#ffffff";
    ctx.strokeRect(x, y, w, h);
    for (const [part, colour] of Object.entries(colours)) {
      const [start, stop] = drawing.parts[part];
      const points = face.landmarks.slice(start, stop).map(([px, py]) => [px * scale, py * scale]);
      ctx.fillStyle = ctx.strokeStyle = colour;
      if (part !== "jaw") {
        const xs = points.map((p) => p[0]);
        const ys = points.map((p) => p[1]);
        ctx.lineWidth = Math.max(1, line / 2);
        ctx.strokeRect(Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
      }
      for (const [px, py] of points) {
        ctx.beginPath();
        ctx.arc(px, py, line * 0.9 + 0.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    const text = `${face.label} ${Math.round(face.probabilities[face.label] * 100)}%`;
    const size = Math.max(14, Math.round(w / 11));
    ctx.font = `bold ${size}px system-ui, sans-serif`;
    const width = ctx.measureText(text).width + size * 0.6;
    const top = y - size * 1.4 >= 0 ? y - size * 1.4 : y + h;
    ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
    ctx.fillRect(x, top, width, size * 1.4);
    ctx.fillStyle = "#ffff00";
    ctx.textBaseline = "middle";
    ctx.fillText(text, x + size * 0.3, top + size * 0.72);
  });
}
