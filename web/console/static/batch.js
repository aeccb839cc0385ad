// Upload (drop, files, folder or zip) with a progress bar, then the batch's live progress and
// its results grid. Data is only ever put in the page with textContent or attributes.

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const FINAL = new Set(["completed", "canceled"]);
const POLL_MS = 1000;
const thumbnails = new Map(); // ref -> object URL of the browser's own copy of the upload
let chosen = []; // [name, File]
let batchId = "";
let gridPage = 1;
let polling = null;

function isZip(name) {
  return name.toLowerCase().endsWith(".zip");
}

function choose(files) {
  chosen = files;
  const zips = files.filter(([name]) => isZip(name)).length;
  const images = files.length - zips;
  $("selection").textContent = files.length
    ? `${images} photo(s) and ${zips} zip(s) chosen.`
    : "Nothing chosen yet.";
  $("upload-start").disabled = files.length === 0;
}

// A dropped folder arrives as directory entries: read them recursively.
async function entryFiles(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((ok, fail) => entry.file(ok, fail));
    return [[prefix + file.name, file]];
  }
  const reader = entry.createReader();
  const found = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (batch.length === 0) break;
    for (const child of batch) found.push(...(await entryFiles(child, `${prefix}${entry.name}/`)));
  }
  return found;
}

async function dropped(event) {
  event.preventDefault();
  $("drop").classList.remove("over");
  const entries = [...event.dataTransfer.items]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (entries.length) {
    const lists = await Promise.all(entries.map((entry) => entryFiles(entry, "")));
    choose(lists.flat());
  } else {
    choose([...event.dataTransfer.files].map((f) => [f.name, f]));
  }
}

function upload() {
  const form = new FormData();
  for (const [name, file] of chosen) {
    if (isZip(name)) {
      form.append("archive", file, name);
    } else {
      form.append("images", file, name);
      thumbnails.set(name, URL.createObjectURL(file));
    }
  }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/console/api/batches");
  xhr.setRequestHeader("X-CSRF-Token", csrf);
  xhr.responseType = "json";
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      $("upload-progress").value = Math.round((100 * e.loaded) / e.total);
      $("upload-status").textContent = `${Math.round(e.loaded / 1024)} of ${Math.round(e.total / 1024)} KB sent`;
    }
  });
  xhr.addEventListener("load", () => {
    if (xhr.status === 202) {
      $("upload-progress").value = 100;
      $("upload-status").textContent = "Uploaded.";
      history.replaceState(null, "", `/console/batches/${encodeURIComponent(xhr.response.id)}`);
      showBatch(xhr.response.id);
    } else {
      const error = xhr.response && xhr.response.error;
      $("upload-status").textContent = `Refused: ${error ? error.message : xhr.status}`;
      $("upload-start").disabled = false;
    }
  });
  xhr.addEventListener("error", () => {
    $("upload-status").textContent = "The upload failed: check the connection and retry.";
    $("upload-start").disabled = false;
  });
  $("upload-start").disabled = true;
  xhr.send(form);
}

async function getJson(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function showCounts(batch) {
  for (const [name, count] of Object.entries(batch.counts)) {
    const cell = document.querySelector(`[data-count="${name}"]`);
    if (cell) cell.textContent = String(count);
  }
  for (const [name, count] of Object.entries(batch.decisions || {})) {
    const cell = document.querySelector(`[data-decision="${name}"]`);
    if (cell) cell.textContent = String(count);
  }
  const done = batch.total - batch.counts.queued - batch.counts.running;
  $("batch-progress").max = Math.max(batch.total, 1);
  $("batch-progress").value = done;
  $("batch-status").textContent = `${batch.status}: ${done} of ${batch.total} done`;
  $("cancel-batch").disabled = FINAL.has(batch.status);
}

async function poll() {
  try {
    const batch = await getJson(`/console/api/batches/${encodeURIComponent(batchId)}`);
    showCounts(batch);
    if (FINAL.has(batch.status)) {
      clearInterval(polling);
      polling = null;
      document.body.dataset.batchDone = "yes"; // tests and screenshots wait on it
      await loadGrid();
    }
  } catch (error) {
    $("batch-status").textContent = `Could not read the batch: ${error.message}`;
  }
}

function filterParams() {
  const params = new URLSearchParams();
  for (const name of ["decision", "min", "max", "sort"]) {
    const value = $(`filter-${name}`).value;
    if (value !== "") params.set(name, value);
  }
  return params;
}

function thumbnailOf(job) {
  if (thumbnails.has(job.ref)) return thumbnails.get(job.ref);
  return `/console/api/jobs/${encodeURIComponent(job.id)}/image`; // kept for review, or 404
}

function percent(value) {
  return typeof value === "number" ? `${(100 * value).toFixed(1)}%` : "";
}

function card(job) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  const result = job.result || {};
  node.dataset.jobId = job.id;
  const image = node.querySelector(".thumb");
  const source = thumbnailOf(job);
  if (source) {
    image.src = source;
    image.addEventListener("error", () => image.classList.add("placeholder"), { once: true });
  } else {
    image.classList.add("placeholder");
  }
  image.alt = `Photo ${job.ref || job.id}`;
  node.querySelector(".ref").textContent = job.ref || job.id;
  const decision = node.querySelector(".decision");
  decision.textContent = result.decision || job.status;
  decision.classList.add(`is-${result.decision || job.status}`);
  node.querySelector(".confidence").textContent = percent(job.confidence);
  node.querySelector(".model-label").textContent = result.model ? `Model: ${result.model.label}` : "";
  node.querySelector(".sku-label").textContent = result.sku ? `SKU: ${result.sku.label}` : "";
  const list = node.querySelector(".candidates");
  for (const c of (result.candidates || []).slice(0, 5)) {
    const item = document.createElement("li");
    item.textContent = `${c.sku} (${percent(c.confidence)})`;
    list.append(item);
  }
  if (!list.children.length) node.querySelector(".top").hidden = true;
  const correct = node.querySelector(".correct");
  if (job.status === "succeeded") {
    const options = document.createElement("datalist");
    options.id = `skus-${job.id}`;
    for (const c of result.candidates || []) options.append(new Option(c.sku));
    correct.append(options);
    node.querySelector(".correct-sku").setAttribute("list", options.id);
    node.querySelector(".correct-form").addEventListener("submit", (e) => saveCorrection(e, job));
  } else {
    correct.hidden = true;
  }
  node.querySelector(".failure").textContent = job.error ? job.error.message : "";
  return node;
}

async function saveCorrection(event, job) {
  event.preventDefault();
  const form = event.target;
  const value = form.querySelector(".correct-sku").value.trim();
  const body = form.querySelector(".correct-new").checked
    ? { not_in_catalog: true, label: value }
    : { sku: value };
  const status = form.querySelector(".correct-status");
  try {
    await getJson(`/console/api/jobs/${encodeURIComponent(job.id)}/feedback`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    status.textContent = `Corrected to ${value}.`;
  } catch (error) {
    status.textContent = `Not saved: ${error.message}`;
  }
}

async function loadGrid() {
  const params = filterParams();
  params.set("page", String(gridPage));
  const base = `/console/api/batches/${encodeURIComponent(batchId)}`;
  const exportParams = new URLSearchParams();
  if (params.get("decision")) exportParams.set("decision", params.get("decision"));
  const query = exportParams.toString() ? `?${exportParams}` : "";
  $("download-csv").href = `${base}/results.csv${query}`;
  $("download-ndjson").href = `${base}/results.ndjson${query}`;
  try {
    const page = await getJson(`${base}/grid?${params}`);
    $("grid").replaceChildren(...page.items.map(card));
    gridPage = page.page;
    $("grid-summary").textContent = `${page.matched} result(s) match.`;
    $("page-label").textContent = `Page ${page.page} of ${page.pages}`;
    $("page-prev").disabled = page.page <= 1;
    $("page-next").disabled = page.page >= page.pages;
    document.body.dataset.gridLoaded = String(Date.now());
  } catch (error) {
    $("grid-summary").textContent = `Could not load the results: ${error.message}`;
  }
}

async function cancelBatch() {
  try {
    showCounts(await getJson(`/console/api/batches/${encodeURIComponent(batchId)}/cancel`, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
    }));
  } catch (error) {
    $("batch-status").textContent = `Could not cancel: ${error.message}`;
  }
}

function showBatch(id) {
  batchId = id;
  $("batch-id").textContent = id;
  $("batch-panel").hidden = false;
  $("upload-panel").hidden = true;
  poll();
  polling = setInterval(poll, POLL_MS);
}

function start() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", dropped);
  $("pick-files").addEventListener("change", (e) => choose([...e.target.files].map((f) => [f.name, f])));
  $("pick-folder").addEventListener("change", (e) =>
    choose([...e.target.files].map((f) => [f.webkitRelativePath || f.name, f])),
  );
  $("upload-start").addEventListener("click", upload);
  $("cancel-batch").addEventListener("click", cancelBatch);
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    gridPage = 1;
    loadGrid();
  });
  $("page-prev").addEventListener("click", () => { gridPage -= 1; loadGrid(); });
  $("page-next").addEventListener("click", () => { gridPage += 1; loadGrid(); });
  const existing = $("batch-panel").dataset.batchId;
  if (existing) showBatch(existing);
}

start();
