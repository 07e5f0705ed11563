// The page talks to the same service: POST /v1/predict for the verdict, POST /v1/explain for the overlay.
const results = document.getElementById("results");
const drop = document.getElementById("drop");

fetch("/healthz").then(r => r.json()).then(h => { document.getElementById("model-id").textContent = h.model_id; });
fetch("/v1/model").then(r => r.json()).then(m => { document.getElementById("model-input").textContent = m.input.described; });

function card(file) {
  const div = document.createElement("div");
  div.className = "card";
  div.innerHTML = `<h2></h2><div class="status">scoring…</div>`;
  div.querySelector("h2").textContent = file.name;
  results.prepend(div);
  return div;
}

async function check(file) {
  const div = card(file);
  const status = div.querySelector(".status");
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    const body = await response.json();
    const result = body.results ? body.results[0] : null;
    if (!response.ok || !result || result.error) {
      status.className = "status error";
      status.textContent = (result && result.error) || body.error || `error ${response.status}`;
      return;
    }
    const percent = (100 * result.prob_fake).toFixed(1);
    status.innerHTML = `<div class="verdict ${result.verdict}">${result.verdict}</div>
      <div>probability of FAKE: <span class="prob">${percent}%</span></div>
      <div class="bar" title="probability of FAKE"><span style="width:${percent}%"></span></div>`;
    if (result.in_domain === false) {
      const note = document.createElement("div");
      note.className = "domain";
      note.textContent = "Unlike every image this model was trained on (domain score " +
        `${result.domain_score.toFixed(2)}; above 1 is outside, or a size no training image had): ` +
        "the probability is a guess, not a verdict.";
      status.appendChild(note);
    }
    const explainForm = new FormData();
    explainForm.append("file", file, file.name);
    const overlay = await fetch("/v1/explain", { method: "POST", body: explainForm });
    if (overlay.ok) {
      const img = document.createElement("img");
      img.alt = `Grad-CAM of ${file.name}`;
      img.className = "overlay";
      img.src = URL.createObjectURL(await overlay.blob());
      div.appendChild(img);
    }
  } catch (error) {
    status.className = "status error";
    status.textContent = String(error);
  }
}

function checkAll(files) { for (const file of files) check(file); }

document.getElementById("picker").addEventListener("change", event => checkAll(event.target.files));
drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", event => {
  event.preventDefault();
  drop.classList.remove("over");
  checkAll(event.dataTransfer.files);
});
