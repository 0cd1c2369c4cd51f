// Upload: files or folders dropped or chosen, each sent by itself with STOW-RS (PS3.18
// 10.5) so that each has its own progress and its own outcome, three at a time.
import { ROOT, authHeaders } from "./api.js";
import { h } from "./dom.js";
import { formatBytes, randomText, stowFrame, stowOutcome } from "./logic.js";

const AT_ONCE = 3;

export function render(view) {
  const rows = h("tbody");
  const summary = h("p", { id: "upload-summary", role: "status", "aria-live": "polite" });
  const files = h("input", { id: "files", type: "file", multiple: true });
  const folder = h("input", { id: "folder", type: "file", webkitdirectory: true });
  const zone = h("div", { id: "dropzone", class: "dropzone", tabindex: "0" },
    h("p", {}, "Drop DICOM files or folders here, or choose them:"),
    h("label", { for: "files" }, "Files "), files, " ",
    h("label", { for: "folder" }, "A folder "), folder);
  const queue = [];
  let running = 0;
  const outcome = { stored: 0, failed: 0 };
  view.replaceChildren(h("h1", {}, "Upload"), zone, summary,
    h("div", { class: "scroll" }, h("table", { id: "uploads" }, h("caption", {}, "Files sent"),
      h("thead", {}, h("tr", {}, ["File", "Size", "Progress", "Outcome"].map((x) => h("th", { scope: "col" }, x)))), rows)));

  function add(list) {
    for (const file of list) {
      const progress = h("progress", { max: "100", value: "0", "aria-label": `Progress of ${file.name}` });
      const result = h("td", { class: "outcome" }, "waiting");
      const row = h("tr", { dataset: { file: file.webkitRelativePath || file.name } },
        h("td", {}, file.webkitRelativePath || file.name), h("td", {}, formatBytes(file.size)), h("td", {}, progress), result);
      rows.append(row);
      queue.push({ file, progress, result, row });
    }
    pump();
  }

  function pump() {
    while (running < AT_ONCE && queue.length) {
      running += 1;
      send(queue.shift()).finally(() => { running -= 1; tell(); pump(); });
    }
    tell();
  }

  function tell() {
    const waiting = queue.length + running;
    summary.textContent = `${outcome.stored} stored, ${outcome.failed} failed${waiting ? `, ${waiting} to go` : ""}.`;
  }

  function send({ file, progress, result, row }) {
    const frame = stowFrame(`dicomweb-${randomText(12)}`);
    result.textContent = "sending";
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("POST", `${ROOT}/studies`);
      request.setRequestHeader("Content-Type", frame.type);
      request.setRequestHeader("Accept", "application/dicom+json");
      for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
      request.upload.onprogress = (event) => {
        if (event.lengthComputable) progress.value = Math.round((100 * event.loaded) / event.total);
      };
      request.onload = () => {
        let body = null;
        try { body = JSON.parse(request.responseText); } catch (_) { /* no JSON */ }
        const found = stowOutcome(request.status, body);
        progress.value = 100;
        result.textContent = found.ok ? (found.reason || "stored") : found.reason;
        row.classList.add(found.ok ? "ok" : "failed");
        outcome[found.ok ? "stored" : "failed"] += 1;
        resolve();
      };
      request.onerror = () => {
        result.textContent = "the server cannot be reached";
        row.classList.add("failed");
        outcome.failed += 1;
        resolve();
      };
      // The file goes from disk as it is read: a Blob of the part's head, the file, the tail.
      request.send(new Blob([frame.head, file, frame.tail]));
    });
  }

  async function entries(item, into) {
    if (item.isFile) {
      into.push(await new Promise((resolve, reject) => item.file(resolve, reject)));
    } else if (item.isDirectory) {
      const reader = item.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await entries(child, into);
      }
    }
  }

  files.addEventListener("change", () => { add([...files.files]); files.value = ""; });
  folder.addEventListener("change", () => { add([...folder.files]); folder.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const found = [];
    const items = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry());
    if (items.every(Boolean)) {
      for (const item of items) await entries(item, found);
    } else {
      found.push(...event.dataTransfer.files);
    }
    add(found);
  });
}
