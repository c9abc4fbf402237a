"use strict";
// The dataset screen of the grounded-sam app page (loaded before app.js, whose helpers it uses when called): the
// listing and its filters, opening an image in the editor, saving its corrections.

const LIST_LIMIT = 500;  // dataset images listed at once; the filters narrow the rest

async function loadDataset() {
  const reply = await fetch("/api/dataset", { headers: { "X-Session": state.session } });
  if (!reply.ok) { setStatus("Cannot read the dataset", "error"); return; }
  const dataset = await reply.json();
  state.datasetImages = dataset.images;
  const classFilter = $("ds-class"), splitFilter = $("ds-split");
  const kept = [classFilter.value, splitFilter.value];
  classFilter.replaceChildren(new Option("all", ""), ...dataset.classes.map((name) => new Option(name, name)));
  const splits = [...new Set(dataset.images.map((image) => image.split))].sort();
  splitFilter.replaceChildren(new Option("all", ""), ...splits.map((name) => new Option(name, name)));
  [classFilter.value, splitFilter.value] = kept;
  showDatasetList();
}

function datasetFilter() {
  const wanted = $("ds-class").value, split = $("ds-split").value, empty = $("ds-empty").checked;
  const low = $("ds-low").checked, threshold = Number($("ds-low-threshold").value);
  const corrected = $("ds-corrected").checked;
  return (image) => (!wanted || image.classes.includes(wanted)) && (!split || image.split === split)
    && (!empty || image.classes.length === 0) && (!corrected || image.corrected)
    && (!low || (image.min_confidence !== null && image.min_confidence < threshold));
}

function showDatasetList() {
  const shown = state.datasetImages.filter(datasetFilter());
  const current = state.workspace ? state.workspace.dataset_key : null;
  $("ds-list").replaceChildren(...shown.slice(0, LIST_LIMIT).map((image) => {
    const counts = {};
    image.classes.forEach((name) => { counts[name] = (counts[name] || 0) + 1; });
    const summary = Object.entries(counts).map(([name, count]) => `${name} ${count}`).join(", ") || "no detections";
    const text = `${image.name} · ${image.split} · ${summary}${image.corrected ? " · corrected" : ""}`;
    const button = element("button", { type: "button", textContent: text });
    button.addEventListener("click", () => openDatasetImage(image.name));
    const item = element("li", {}, button);
    item.dataset.name = image.name;
    item.classList.toggle("current", image.name === current);
    return item;
  }));
  const more = shown.length > LIST_LIMIT ? ` (first ${LIST_LIMIT} listed: narrow the filters)` : "";
  $("ds-count").textContent = `${shown.length} of ${state.datasetImages.length} images${more}`;
}

async function openDatasetImage(name) {
  const workspace = await busy("opening", () => call("/api/dataset/open", { name }));
  if (workspace) setWorkspace(workspace, `/api/dataset/image?name=${encodeURIComponent(name)}`);
  showDatasetList();
}

async function save() {
  const result = await busy("saving", () => call("/api/dataset/save", { changes: state.changes }));
  if (!result) return;
  const { selected } = state;
  setWorkspace(result.workspace, null);
  state.selected = result.workspace.detections.some((d) => d.id === selected) ? selected : null;
  render();
  await loadDataset();
  setStatus(`saved ${result.saved}: ${result.count} detections`);
}
