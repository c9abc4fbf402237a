"use strict";
// The grounded-sam app page. Every text from the server or a file goes into the page with textContent (never
// innerHTML), and the page loads nothing from other origins (see the server's Content-Security-Policy).

const $ = (id) => document.getElementById(id);
const state = { session: null, limits: null, workspace: null, selected: null, hidden: new Set(), changes: [],
                datasetImages: [], objectUrl: null, picked: [] };

function setStatus(text, kind = "idle") {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = kind;
}

async function call(path, body, { raw = false, headers = {}, response = false } = {}) {
  const reply = await fetch(path, {
    method: "POST",
    headers: { "X-Session": state.session || "", "Content-Type": raw ? "application/octet-stream" : "application/json",
               ...headers },
    body: raw ? body : JSON.stringify(body || {}),
  });
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    try { message = (await reply.json()).error || message; } catch (error) { /* not JSON */ }
    throw new Error(message);
  }
  return response ? reply : reply.json();
}

async function busy(text, work) {
  setStatus(text, "busy");
  try {
    const result = await work();
    setStatus("ready");
    return result;
  } catch (error) {
    setStatus(error.message, "error");
    return null;
  }
}

function element(tag, properties = {}, ...children) {
  const made = Object.assign(document.createElement(tag), properties);
  made.append(...children);
  return made;
}

// ---- drawing ----------------------------------------------------------------------------------------------------
function percent(value, total) { return `${(100 * value / total).toFixed(4)}%`; }

function place(node, [x1, y1, x2, y2], workspace) {
  Object.assign(node.style, { left: percent(x1, workspace.width), top: percent(y1, workspace.height),
    width: percent(x2 - x1 + 1, workspace.width), height: percent(y2 - y1 + 1, workspace.height) });
}

function render() {
  const workspace = state.workspace;
  $("overlays").replaceChildren();
  $("marks").replaceChildren();
  $("detections").replaceChildren();
  const hasImage = Boolean(workspace);
  for (const id of ["dl-json", "dl-annotated", "run", "find-all", "everything"]) $(id).disabled = !hasImage;
  if (hasImage && !state.textPrompts) $("run").disabled = true;
  if (hasImage && !state.findEverything) $("find-all").disabled = true;
  for (const id of ["dl-mask", "dl-cutout"]) $(id).disabled = state.selected === null;
  const inDataset = Boolean(workspace && workspace.dataset_key);
  $("save").hidden = !inDataset;
  $("save").disabled = !inDataset;
  if (!workspace) return;
  $("image-name").textContent = workspace.name;
  $("class-names").replaceChildren(...workspace.classes.map((name) => element("option", { value: name })));
  for (const detection of workspace.detections) drawDetection(detection, workspace);
}

function drawDetection(detection, workspace) {
  const selected = detection.id === state.selected, hidden = state.hidden.has(detection.id);
  const mask = element("img", { src: detection.mask, alt: "" });
  mask.dataset.id = detection.id;
  mask.classList.toggle("selected", selected);
  mask.classList.toggle("hidden", hidden);
  $("overlays").append(mask);
  const shownBox = detection.box || detection.xyxy;  // the prompt box; the mask's box for objects without one
  if (shownBox) {
    const box = element("div", { className: "box" }, element("span", { textContent: detection.class_name }));
    box.dataset.id = detection.id;
    box.classList.toggle("selected", selected);
    box.classList.toggle("hidden", hidden);
    place(box, shownBox, workspace);
    box.style.borderColor = detection.color;
    box.firstChild.style.background = detection.color;
    $("marks").append(box);
  }
  if (selected) {
    detection.points.forEach(([x, y], index) => {
      const point = element("div", { className: `point ${detection.labels[index] ? "positive" : "negative"}` });
      Object.assign(point.style, { left: percent(x, workspace.width), top: percent(y, workspace.height) });
      $("marks").append(point);
    });
  }
  $("detections").append(listItem(detection, selected, hidden));
}

function listItem(detection, selected, hidden) {
  const item = element("li");
  item.dataset.id = detection.id;
  item.classList.toggle("selected", selected);
  const show = element("input", { type: "checkbox", checked: !hidden, title: "show or hide", className: "show" });
  show.addEventListener("click", (event) => event.stopPropagation());
  show.addEventListener("change", () => {
    if (show.checked) state.hidden.delete(detection.id); else state.hidden.add(detection.id);
    render();  // in the page only: no request
  });
  const swatch = element("span", { className: "swatch" });
  swatch.style.background = detection.color;
  const confidence = detection.confidence === null ? "—" : detection.confidence.toFixed(2);
  const classSelect = element("select", { className: "class", title: "change class" },
    ...state.workspace.classes.map((name) => element("option", { value: name, textContent: name,
      selected: name === detection.class_name })));
  classSelect.addEventListener("click", (event) => event.stopPropagation());
  classSelect.addEventListener("change", () => changeClass(detection, classSelect.value));
  const remove = element("button", { type: "button", textContent: "✕", title: "delete", className: "delete" });
  remove.addEventListener("click", (event) => { event.stopPropagation(); deleteDetection(detection); });
  item.append(show, swatch, element("span", { className: "name", textContent: detection.class_name }),
    element("span", { className: "confidence", textContent: confidence }), classSelect, remove);
  item.addEventListener("click", () => { state.selected = selected ? null : detection.id; render(); });
  return item;
}

// ---- segment ----------------------------------------------------------------------------------------------------
function setWorkspace(workspace, imageUrl) {
  Object.assign(state, { workspace, selected: null, changes: [] });
  state.hidden.clear();
  if (imageUrl) {
    $("base").src = imageUrl;
    $("base").hidden = false;
    $("stage").classList.add("has-image");
    $("drop-hint").hidden = true;
  }
  render();
}

function replaceDetection(detection) {
  const list = state.workspace.detections;
  const index = list.findIndex((item) => item.id === detection.id);
  if (index >= 0) list[index] = detection; else list.push(detection);
  if (!state.workspace.classes.includes(detection.class_name)) state.workspace.classes.push(detection.class_name);
  render();
}

async function upload(file) {
  if (!file) return;
  if (file.size > state.limits.max_upload_bytes) {  // the server refuses it too (413), but only after the upload
    const limit = (state.limits.max_upload_bytes / 1e6).toFixed(1);
    setStatus(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${limit} MB`, "error");
    return;
  }
  const workspace = await busy("uploading and encoding", () => call("/api/image", file,
    { raw: true, headers: { "X-File-Name": encodeURIComponent(file.name) } }));
  if (!workspace) return;
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);  // the browser shows its own copy: the image never travels back
  setWorkspace(workspace, state.objectUrl);
  showPicked();
}

function pickFolder(files) {
  state.picked = [...files].filter((file) => file.type.startsWith("image/"))
    .sort((a, b) => a.webkitRelativePath.localeCompare(b.webkitRelativePath));
  showPicked();
  setStatus(`${state.picked.length} images in the folder: pick one`);
}

function showPicked() {
  const current = state.workspace ? state.workspace.name : null;
  $("picked").hidden = state.picked.length === 0;
  $("picked").replaceChildren(...state.picked.map((file) => {
    const button = element("button", { type: "button", textContent: file.webkitRelativePath || file.name });
    button.addEventListener("click", () => upload(file));
    const item = element("li", {}, button);
    item.classList.toggle("current", file.name === current);
    return item;
  }));
}

async function loadOntology(file) {
  if (!file) return;
  const result = await busy("reading the ontology", () => call("/api/ontology", file,
    { raw: true, headers: { "X-File-Name": encodeURIComponent(file.name) } }));
  if (result) $("prompts").value = result.prompts;
}

function thresholds() {
  return { min_confidence: Number($("min-confidence").value), nms: Number($("nms").value), keep: $("keep").checked };
}

async function find(task, prompts) {
  const workspace = await busy("detecting", () => call("/api/run", { prompts, task, ...thresholds() }));
  if (workspace) setWorkspace(workspace, null);
}

async function segmentEverything() {
  const workspace = await busy("segmenting everything", () => call("/api/everything", {
    class_name: $("add-class").value, keep: $("keep").checked, points_per_side: Number($("points-per-side").value),
    pred_iou_thresh: Number($("pred-iou").value), stability_score_thresh: Number($("stability").value) }));
  if (workspace) setWorkspace(workspace, null);
}

async function chooseModel(name) {
  const result = await busy(`loading ${name}`, () => call("/api/model", { name }));
  if (result) setStatus(`models: ${result.models.name}`);
}

// ---- editing ----------------------------------------------------------------------------------------------------
function imagePoint(event) {
  const rect = $("base").getBoundingClientRect(), workspace = state.workspace;
  const x = Math.min(workspace.width, Math.max(0, (event.clientX - rect.left) * workspace.width / rect.width));
  const y = Math.min(workspace.height, Math.max(0, (event.clientY - rect.top) * workspace.height / rect.height));
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

async function click(point, label) {
  if (state.selected === null) {
    if (label === 0) { setStatus("Select a detection first: − points remove parts of it", "error"); return; }
    const className = $("add-class").value;
    const detection = await busy("adding", () => call("/api/add", { point, class_name: className }));
    if (detection) added(detection, { add: detection.id, click: point, class_name: className });
    return;
  }
  const detection = await busy("refining", () => call("/api/refine", { id: state.selected, point, label }));
  if (detection) { replaceDetection(detection); state.changes.push({ refine: detection.id, point, label }); }
}

async function addBox(box) {
  const className = $("add-class").value;
  const detection = await busy("adding", () => call("/api/add", { box, class_name: className }));
  if (detection) added(detection, { add: detection.id, box, class_name: className });
}

function added(detection, change) {
  replaceDetection(detection);
  state.selected = detection.id;
  state.changes.push(change);
  render();
}

async function deleteDetection(detection) {
  if (!await busy("deleting", () => call("/api/delete", { id: detection.id }))) return;
  state.workspace.detections = state.workspace.detections.filter((item) => item.id !== detection.id);
  if (state.selected === detection.id) state.selected = null;
  state.changes.push({ delete: detection.id, class_name: detection.class_name });
  render();
}

async function changeClass(detection, className) {
  const workspace = await busy("changing class", () => call("/api/class", { id: detection.id, class_name: className }));
  if (!workspace) return;
  state.changes.push({ class: detection.id, from: detection.class_name, to: className });
  state.workspace = workspace;  // selection, hidden ones and changes stay
  render();
}

async function download(kind) {
  const ids = state.workspace.detections.filter((d) => !state.hidden.has(d.id)).map((d) => d.id);
  const reply = await busy("preparing the download", () => call(`/api/export/${kind}`, { ids, id: state.selected },
    { response: true }));
  if (!reply) return;
  const disposition = reply.headers.get("Content-Disposition") || "";
  const name = decodeURIComponent((disposition.match(/filename\*=UTF-8''(.+)$/) || [])[1] || `${kind}.bin`);
  const url = URL.createObjectURL(await reply.blob());
  const link = element("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function showTab(name) {
  $("tab-segment").classList.toggle("active", name === "segment");
  $("tab-dataset").classList.toggle("active", name === "dataset");
  $("segment-tools").hidden = name !== "segment";
  $("dataset-tools").hidden = name !== "dataset";
}

// ---- events -----------------------------------------------------------------------------------------------------
function tool() { return document.querySelector("input[name=tool]:checked").value; }

function wireStage() {
  const stage = $("stage");
  let dragStart = null;
  stage.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    if (state.workspace) click(imagePoint(event), 0);
  });
  stage.addEventListener("mousedown", (event) => {
    if (!state.workspace || event.button !== 0 || tool() !== "box") return;
    event.preventDefault();  // no native image drag: it would swallow the mouseup
    dragStart = imagePoint(event);
  });
  stage.addEventListener("mousemove", (event) => {
    if (!dragStart) return;
    const [x, y] = imagePoint(event), drag = $("drag-box");
    place(drag, [Math.min(x, dragStart[0]), Math.min(y, dragStart[1]), Math.max(x, dragStart[0]),
      Math.max(y, dragStart[1])], state.workspace);
    drag.hidden = false;
  });
  stage.addEventListener("mouseup", (event) => {
    if (!state.workspace || event.button !== 0) return;
    if (tool() === "box") {
      if (!dragStart) return;
      const [x, y] = imagePoint(event);
      $("drag-box").hidden = true;
      addBox([dragStart[0], dragStart[1], x, y]);
      dragStart = null;
      return;
    }
    click(imagePoint(event), tool() === "negative" || event.shiftKey ? 0 : 1);
  });
  stage.addEventListener("dragover", (event) => event.preventDefault());
  stage.addEventListener("drop", (event) => { event.preventDefault(); upload(event.dataTransfer.files[0]); });
}

function wireControls() {
  $("file").addEventListener("change", (event) => upload(event.target.files[0]));
  $("folder").addEventListener("change", (event) => pickFolder(event.target.files));
  $("ontology-file").addEventListener("change", (event) => loadOntology(event.target.files[0]));
  $("run").addEventListener("click", () => find($("task").value, $("prompts").value));
  $("prompts").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && state.workspace) find($("task").value, $("prompts").value);
  });
  $("find-all").addEventListener("click", () => find("object_detection", ""));
  $("everything").addEventListener("click", segmentEverything);
  $("model").addEventListener("change", () => chooseModel($("model").value));
  for (const kind of ["json", "annotated", "mask", "cutout"]) {
    $(`dl-${kind}`).addEventListener("click", () => download(kind));
  }
  $("save").addEventListener("click", save);
  $("tab-segment").addEventListener("click", () => showTab("segment"));
  $("tab-dataset").addEventListener("click", () => showTab("dataset"));
  for (const id of ["ds-class", "ds-split", "ds-empty", "ds-low", "ds-low-threshold", "ds-corrected"]) {
    $(id).addEventListener("change", showDatasetList);
  }
  wireStage();
}

function applySession(session) {
  Object.assign(state, {
    session: session.session,
    limits: session.limits,
    textPrompts: session.options.text_prompts,
    findEverything: session.options.find_everything,
  });
  $("prompts").value = session.prompts;
  $("task").value = session.options.task === "open_vocabulary" ? "open_vocabulary" : "phrase_grounding";
  $("min-confidence").value = session.options.min_confidence;
  $("nms").value = session.options.nms;
  $("model").replaceChildren(...session.models.map((choice) => new Option(choice.name, choice.name)));
  $("model").value = session.model.name;
  if (session.classes.length) $("add-class").value = session.classes[0];
}

async function start() {
  const session = await busy("starting", () => call("/api/session", {}));
  if (!session) return;
  applySession(session);
  wireControls();
  if (session.dataset) {
    $("tab-dataset").hidden = false;
    await loadDataset();
    if (new URLSearchParams(location.search).get("tab") !== "segment") showTab("dataset");
  }
  setStatus("ready");
}

start();
