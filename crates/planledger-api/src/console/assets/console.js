// planledger console: a little behaviour on server-rendered pages. Every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A form is sent once: its buttons are disabled as it goes (the server's idempotency key makes
  // a second sending harmless anyway).
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      setTimeout(() => form.querySelectorAll("button[type=submit]").forEach((b) => (b.disabled = true)), 0);
    });
  }

  // The version slider shows the store at the version it stops on.
  const slider = document.getElementById("version");
  const number = document.getElementById("version-number");
  if (slider && number) {
    slider.addEventListener("input", () => (number.value = slider.value));
    slider.addEventListener("change", () => {
      number.value = slider.value;
      slider.form.submit();
    });
  }

  // A catalog file chosen is read into the text area that is sent.
  for (const input of document.querySelectorAll("input[type=file][data-fills]")) {
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      if (file) document.getElementById(input.dataset.fills).value = await file.text();
    });
  }

  // Rebuilds report their progress while they run.
  for (const box of document.querySelectorAll(".progress[data-progress-url]")) {
    if (box.dataset.running === "true") follow(box);
  }
});

async function follow(box) {
  for (;;) {
    let job = null;
    try {
      const response = await fetch(box.dataset.progressUrl, { credentials: "same-origin" });
      if (response.ok) job = await response.json();
    } catch (_) {
      // A missed poll is retried.
    }
    if (job) show(box, job);
    if (job && job.state !== "running") return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function show(box, job) {
  const total = Math.max(job.eventsTotal, 1);
  box.replaceChildren();
  const bar = document.createElement("progress");
  bar.max = total;
  bar.value = Math.min(job.eventsDone, total);
  const line = document.createElement("p");
  line.className = "state";
  const state = document.createElement("span");
  state.className = "rebuild-state";
  state.textContent = job.state;
  line.append(state, ` · ${job.phase} · ${job.eventsDone} of ${job.eventsTotal} events · ${job.elapsedSeconds.toFixed(1)} s`);
  if (job.generation != null) {
    const generation = document.createElement("span");
    generation.className = "new-generation";
    generation.textContent = job.generation;
    line.append(" · generation ", generation);
  }
  if (job.error) line.append(` · ${job.error}`);
  box.append(bar, line);
  // A finished rebuild's generation is the live one now.
  const live = box.closest(".rebuild")?.querySelector(".generation");
  if (live && job.state === "done" && job.generation != null) live.textContent = job.generation;
}
