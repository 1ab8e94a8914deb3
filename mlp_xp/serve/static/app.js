// The draw-a-digit page: pointer strokes on #pad; as a stroke ends the drawing goes to
// POST /predict as a PNG, and the answer, the top 3 and the 28x28 image the network saw
// are shown. No library, nothing fetched from anywhere but this server.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
let drawing = false;
let pending = 0;  // answers asked for; only the latest one is shown

function blank() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  ink.lineWidth = 18;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.strokeStyle = "#000";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x + 0.01, y);
  ink.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  pad.toBlob((png) => ask(png, "image/png"), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  blank();
  pending += 1;
  show(null);
});

document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) ask(file, file.type || "application/octet-stream");
});

async function ask(body, type) {
  const ticket = ++pending;
  document.getElementById("note").textContent = "thinking\u2026";
  let answer;
  try {
    const response = await fetch("/predict", {method: "POST", headers: {"content-type": type}, body});
    const data = await response.json();
    answer = response.ok ? data[0] : {error: data.error || response.statusText};
  } catch (error) {
    answer = {error: String(error)};
  }
  if (ticket === pending) show(answer);
}

function show(answer) {
  const top3 = document.getElementById("top3");
  const note = document.getElementById("note");
  const big = document.getElementById("answer");
  top3.replaceChildren();
  seen.fillStyle = "#000";
  seen.fillRect(0, 0, 28, 28);
  document.body.dataset.state = answer ? (answer.error ? "error" : "answered") : "empty";
  if (!answer) {
    big.textContent = "?";
    note.textContent = "Draw with the mouse, a finger or a pen.";
    return;
  }
  if (answer.error) {
    big.textContent = "!";
    note.textContent = answer.error;
    return;
  }
  big.textContent = answer.digit === null ? "\u2013" : String(answer.digit);
  note.textContent = answer.note || `${(100 * answer.probability).toFixed(1)}% sure`;
  for (const {digit, probability} of answer.top3) {
    const row = document.createElement("li");
    row.dataset.digit = digit;
    const pct = (100 * probability).toFixed(1);
    row.innerHTML = `<span class="digit">${digit}</span>` +
      `<span class="bar" style="width:${Math.max(1, 2 * probability * 100)}px"></span>` +
      `<span class="pct">${pct}%</span>`;
    top3.append(row);
  }
  if (answer.image) {
    const pixels = seen.createImageData(28, 28);
    answer.image.flat().forEach((v, i) => {
      pixels.data.set([v, v, v, 255], 4 * i);
    });
    seen.putImageData(pixels, 0, 0);
  }
}

async function describe() {
  const text = document.getElementById("model");
  try {
    const m = await (await fetch("/model")).json();
    const accuracy = m.val_accuracy === null ? "no accuracy recorded" :
      `${(100 * m.val_accuracy).toFixed(2)}% on its held-out digits`;
    const calibration = m.temperature === 1 ? "uncalibrated" :
      `calibrated (temperature ${m.temperature.toFixed(3)})`;
    text.textContent = `${m.file}: ${m.network} (${m.activations.join(", ")}), ` +
      `${m.parameters.toLocaleString("en")} parameters, ${accuracy}; ` +
      `running on ${m.backend} ${m.device}; ${calibration}.`;
  } catch (error) {
    text.textContent = `model summary unavailable: ${error}`;
  }
}

blank();
show(null);
describe();
