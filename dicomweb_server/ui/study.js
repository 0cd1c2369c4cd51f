// A study: its key attributes, its series with thumbnails, the quick viewer (rendered
// frames, PS3.18 10.4.1.1.3), and the actions the caller's scopes allow: open in the
// viewer, download as zip, share, correct, reject, delete.
import { IMAGE_ACCEPT, ROOT, authHeaders, call, dicom, image, json, sendJson, session } from "./api.js";
import { confirmDialog, field, fill, h, say } from "./dom.js";
import { PRESETS, TAG, can, dragWindow, first, showDate, text, windowParameter } from "./logic.js";
import { shareTable } from "./admin.js";

const REJECTIONS = [
  ["113001", "Rejected for Quality Reasons"],
  ["113037", "Rejected for Patient Safety Reasons"],
  ["113038", "Incorrect Modality Worklist Entry"],
  ["113039", "Data Retention Policy Expired"],
];
// Patient and study attributes a correction may change (PS3.3 C.7.1.1, C.7.2.1), with VRs.
const CORRECTABLE = [
  ["PatientName", TAG.patientName, "PN"],
  ["PatientID", TAG.patientId, "LO"],
  ["PatientBirthDate", TAG.birthDate, "DA"],
  ["PatientSex", TAG.sex, "CS"],
  ["StudyDescription", TAG.studyDescription, "LO"],
  ["AccessionNumber", TAG.accession, "SH"],
  ["ReferringPhysicianName", TAG.referring, "PN"],
];

export function render(view, context, [uid]) {
  const stop = new AbortController();
  const scopes = context.me.scopes;
  const viewer = new QuickViewer(uid, stop.signal);
  const heading = h("h1", {}, "Study");
  const facts = h("dl", { class: "facts" });
  const actions = h("div", { class: "actions", role: "toolbar", "aria-label": "Study actions" });
  const seriesList = h("ul", { class: "series", id: "series" });
  const sharePanel = h("section", { id: "share-panel", hidden: true, "aria-labelledby": "share-title" });
  view.replaceChildren(heading, facts, actions, sharePanel,
    h("div", { class: "study-body" },
      h("section", { "aria-labelledby": "series-title" }, h("h2", { id: "series-title" }, "Series"), seriesList),
      viewer.element));

  async function load() {
    let studyItem, series;
    try {
      [[studyItem], series] = await Promise.all([
        dicom(`/studies?StudyInstanceUID=${encodeURIComponent(uid)}&includefield=StudyDescription&includefield=PatientBirthDate&includefield=PatientSex&includefield=ReferringPhysicianName`, { signal: stop.signal }),
        dicom(`/studies/${uid}/series?includefield=SeriesDescription`, { signal: stop.signal }),
      ]);
    } catch (error) {
      if (error.name !== "AbortError") say(error.message, "error");
      return;
    }
    if (!studyItem) {
      heading.textContent = "No such study";
      say("The study is not here, or not for you to see.", "error");
      return;
    }
    heading.textContent = text(studyItem, TAG.patientName) || "Study";
    const shown = [
      ["Patient", text(studyItem, TAG.patientName)],
      ["Patient ID", text(studyItem, TAG.patientId)],
      ["Birth date", showDate(text(studyItem, TAG.birthDate))],
      ["Sex", text(studyItem, TAG.sex)],
      ["Study date", showDate(text(studyItem, TAG.studyDate))],
      ["Description", text(studyItem, TAG.studyDescription)],
      ["Accession", text(studyItem, TAG.accession)],
      ["Modalities", text(studyItem, TAG.modalities)],
      ["Referring physician", text(studyItem, TAG.referring)],
      ["Series / instances", `${text(studyItem, TAG.seriesCount)} / ${text(studyItem, TAG.studyInstances)}`],
      ["Study UID", uid],
    ];
    facts.replaceChildren(...shown.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value || "—")]));
    drawActions(studyItem);
    series.sort((a, b) => Number(first(a, TAG.seriesNumber)) - Number(first(b, TAG.seriesNumber)));
    seriesList.replaceChildren(...series.map((item) => seriesRow(item)));
    if (series.length) viewer.show(first(series[0], TAG.seriesUid));
  }

  function seriesRow(item) {
    const seriesUid = first(item, TAG.seriesUid);
    const thumb = h("img", { alt: "", class: "thumb", width: 64, height: 64 });
    image(`/studies/${uid}/series/${seriesUid}/thumbnail?viewport=128,128`, stop.signal)
      .then((url) => { thumb.src = url; }, () => thumb.classList.add("none"));
    return h("li", { dataset: { series: seriesUid } },
      h("button", { type: "button", class: "series-open", onclick: () => viewer.show(seriesUid) },
        thumb,
        h("span", {}, h("strong", {}, `${text(item, TAG.modality)} ${text(item, TAG.seriesNumber)}`), " ",
          text(item, TAG.seriesDescription) || "(no description)", h("br"),
          `${text(item, TAG.seriesInstances)} instances`)),
      can(scopes, "download") ? h("button", { type: "button", class: "link", onclick: () => download(`/studies/${uid}/series/${seriesUid}`, `series-${seriesUid}.zip`) }, "Zip") : null);
  }

  function drawActions(studyItem) {
    const buttons = [];
    if (context.config.viewer) {
      buttons.push(h("button", { type: "button", id: "open-viewer", onclick: () => openViewer(context.config.viewer, uid) }, "Open in OHIF"));
    }
    if (can(scopes, "download")) {
      buttons.push(h("button", { type: "button", id: "download", onclick: () => download(`/studies/${uid}`, `study-${uid}.zip`) }, "Download zip"));
    }
    if (can(scopes, "share")) {
      buttons.push(h("button", { type: "button", id: "share", onclick: () => showShares(sharePanel, uid, scopes) }, "Share"));
    }
    if (can(scopes, "update")) {
      buttons.push(h("button", { type: "button", id: "correct", onclick: () => correct(studyItem).then((done) => done && load()) }, "Correct"));
    }
    if (can(scopes, "delete")) {
      buttons.push(h("button", { type: "button", id: "reject", class: "danger", onclick: () => reject() }, "Reject"));
      buttons.push(h("button", { type: "button", id: "delete", class: "danger", onclick: () => remove() }, "Delete"));
    }
    fill(actions, buttons);
  }

  async function correct(studyItem) {
    const inputs = CORRECTABLE.map(([name, tag]) => field(name.replace(/([a-z])([A-Z])/g, "$1 $2"), { name, value: text(studyItem, tag) }));
    const answer = await confirmDialog("Correct the study", "Every instance of the study is rewritten with these values; the first copy is kept.", inputs, "Correct");
    if (!answer) return false;
    const change = {};
    for (const [name, tag, vr] of CORRECTABLE) {
      const value = (answer[name] || "").trim();
      if (value === text(studyItem, tag)) continue;
      change[tag] = value === "" ? { vr } : { vr, Value: [vr === "PN" ? { Alphabetic: value } : value] };
    }
    if (!Object.keys(change).length) { say("Nothing changed."); return false; }
    try {
      await sendJson("/studies/$bulkUpdate", "POST", { studyInstanceUids: [uid], changeDataset: change });
      say("The study was corrected.", "ok");
      return true;
    } catch (error) {
      say(`Not corrected: ${error.message}`, "error");
      return false;
    }
  }

  async function reject() {
    const select = h("select", { name: "code", id: "reject-code" }, REJECTIONS.map(([code, meaning]) => h("option", { value: code }, meaning)));
    const answer = await confirmDialog("Reject the study", "A rejected study is gone from every search and retrieve; it can be restored until its retention ends.",
      [h("label", { for: "reject-code" }, "Reason"), " ", select], "Reject");
    if (!answer) return;
    try {
      await call(`/studies/${uid}/reject/${answer.code}^DCM`, { method: "POST", accept: "application/json" });
      say("The study was rejected.", "ok");
      window.location.hash = "#/studies";
    } catch (error) {
      say(`Not rejected: ${error.message}`, "error");
    }
  }

  async function remove() {
    const answer = await confirmDialog("Delete the study", "The study and every object of it are deleted for good.", [], "Delete");
    if (!answer) return;
    try {
      await call(`/studies/${uid}`, { method: "DELETE", accept: "application/json" });
      say("The study was deleted.", "ok");
      window.location.hash = "#/studies";
    } catch (error) {
      say(`Not deleted: ${error.message}`, "error");
    }
  }

  load();
  return () => stop.abort();
}

async function openViewer(template, uid) {
  const url = template.replace("{study}", encodeURIComponent(uid));
  if (!session.get() || !url.startsWith("/viewer/")) {
    window.open(url, "_blank", "noopener");
    return;
  }
  // OHIF takes a bearer token as its `token` URL parameter. It gets a session of its own,
  // short-lived and limited to this study, never the tab's key or token. The window is
  // opened at once (within the click, or it would be blocked), and sent on once the
  // session is made.
  const opened = window.open("about:blank", "_blank");
  try {
    const answer = await call(`/studies/${encodeURIComponent(uid)}/viewer-session`, { method: "POST", accept: "application/json" });
    const { access_token: token } = await answer.json();
    if (opened) {
      opened.opener = null;
      opened.location.replace(`${url}&token=${encodeURIComponent(token)}`);
    }
  } catch (error) {
    if (opened) opened.close();
    say(`The viewer cannot be opened: ${error.message}`, "error");
  }
}

/** A zip of a study or series (PS3.18 10.4.1.1.2 with Accept application/zip). Without a
 * credential the browser streams it to disk; with one, it is fetched, then saved. */
async function download(path, name) {
  const href = `${ROOT}${path}?accept=${encodeURIComponent("application/zip")}`;
  if (!Object.keys(authHeaders()).length) {
    h("a", { href, download: name }).click();
    return;
  }
  say("Preparing the download…");
  try {
    const answer = await call(path, { accept: "application/zip" });
    const url = URL.createObjectURL(await answer.blob());
    h("a", { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say("Downloaded.", "ok");
  } catch (error) {
    say(`Not downloaded: ${error.message}`, "error");
  }
}

async function showShares(panel, uid, scopes) {
  panel.hidden = false;
  const made = h("div", { id: "share-made", "aria-live": "polite" });
  const list = h("div", { id: "share-list" });
  const form = h("form", {
    id: "share-form",
    onsubmit: async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form));
      const body = { study: uid, expires_in: Math.round(Number(values.hours || 24) * 3600), rights: values.rights, code: values.code === "on" };
      if (values.uses) body.max_uses = Number(values.uses);
      try {
        const share = await sendJson("/shares", "POST", body);
        const link = `${window.location.origin}${window.location.pathname}#/shared/${encodeURIComponent(share.token)}`;
        fill(made,
          h("p", {}, "Give this link", share.one_time_code ? " and, separately, the one-time code" : "", ". Neither is shown again."),
          copyable("Link", "share-link", link),
          share.one_time_code ? copyable("One-time code", "share-code-made", share.one_time_code) : null,
        );
        listShares();
      } catch (error) {
        say(`No link made: ${error.message}`, "error");
      }
    },
  },
  field("Expires in (hours)", { name: "hours", type: "number", min: "0.1", step: "any", value: "24" }), " ",
  field("Uses at most", { name: "uses", type: "number", min: "1", placeholder: "any" }), " ",
  h("label", {}, "Rights ", h("select", { name: "rights" }, h("option", { value: "view" }, "view"), h("option", { value: "download" }, "view and download"))), " ",
  h("label", {}, h("input", { type: "checkbox", name: "code", checked: true }), " one-time code"), " ",
  h("button", { type: "submit", id: "share-create" }, "Create link"));

  async function listShares() {
    if (!can(scopes, "admin")) return;
    const shares = (await json("/shares")).filter((s) => s.study === uid);
    list.replaceChildren(shareTable("Links to this study", shares, listShares, false));
  }
  panel.replaceChildren(h("h2", { id: "share-title" }, "Share"), form, made, list);
  listShares().catch((error) => say(error.message, "error"));
}

function copyable(label, id, value) {
  const input = h("input", { id, value, readonly: true, size: 60 });
  return h("p", {}, h("label", { for: id }, label), " ", input, " ",
    h("button", { type: "button", onclick: async () => {
      input.select();
      try { await navigator.clipboard.writeText(value); say("Copied.", "ok"); } catch (_) { say("Select the text and copy it."); }
    } }, "Copy"));
}

/** The quick viewer: a series' frames rendered by the server, scrolled with the wheel, the
 * slider or the arrow keys; window presets and drag; zoom. */
class QuickViewer {
  constructor(study, signal) {
    this.study = study;
    this.signal = signal;
    this.frames = [];
    this.index = 0;
    this.center = null;
    this.width = null;
    this.zoom = 1;
    this.serial = 0;
    this.img = h("img", { id: "frame", alt: "The current frame", draggable: "false" });
    this.slider = h("input", { id: "frame-slider", type: "range", min: "1", max: "1", value: "1", "aria-label": "Frame" });
    this.position = h("span", { id: "frame-position", "aria-live": "polite" });
    this.windowText = h("span", { id: "window-value" });
    const presets = h("select", { id: "preset", "aria-label": "Window preset" }, PRESETS.map((p, i) => h("option", { value: i }, p.name)));
    presets.addEventListener("change", () => {
      const preset = PRESETS[Number(presets.value)];
      this.center = preset.center;
      this.width = preset.width;
      this.draw();
    });
    this.stage = h("div", { class: "stage", tabindex: "0", "aria-label": "Frame: arrow keys scroll, drag sets the window, + and - zoom" }, this.img);
    this.element = h("section", { class: "viewer", "aria-labelledby": "viewer-title" },
      h("h2", { id: "viewer-title" }, "Quick viewer"),
      h("div", { class: "tools" },
        presets, " ",
        h("button", { type: "button", id: "zoom-in", "aria-label": "Zoom in", onclick: () => this.setZoom(this.zoom * 1.25) }, "+"),
        h("button", { type: "button", id: "zoom-out", "aria-label": "Zoom out", onclick: () => this.setZoom(this.zoom / 1.25) }, "−"),
        h("button", { type: "button", id: "zoom-reset", onclick: () => this.setZoom(1) }, "Fit"), " ",
        this.windowText),
      this.stage, this.slider, this.position);
    this.slider.addEventListener("input", () => this.go(Number(this.slider.value) - 1));
    this.stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      if (event.ctrlKey) this.setZoom(this.zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
      else this.go(this.index + Math.sign(event.deltaY));
    }, { passive: false });
    this.stage.addEventListener("keydown", (event) => {
      const moves = { ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10 };
      if (event.key in moves) { event.preventDefault(); this.go(this.index + moves[event.key]); }
      if (event.key === "+" || event.key === "=") this.setZoom(this.zoom * 1.25);
      if (event.key === "-") this.setZoom(this.zoom / 1.25);
    });
    let drag = null;
    this.stage.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, center: this.center ?? this.ownCenter(), width: this.width ?? this.ownWidth() };
      this.stage.setPointerCapture(event.pointerId);
    });
    this.stage.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const moved = dragWindow(drag.center, drag.width, event.clientX - drag.x, event.clientY - drag.y);
      this.windowText.textContent = `W ${moved.width} / L ${moved.center}`;
      drag.moved = moved;
    });
    this.stage.addEventListener("pointerup", () => {
      if (drag && drag.moved) {
        this.center = drag.moved.center;
        this.width = drag.moved.width;
        this.draw();
      }
      drag = null;
    });
  }

  ownCenter() { return Number(String(first(this.frames[this.index]?.item, TAG.windowCenter) || 128)); }
  ownWidth() { return Number(String(first(this.frames[this.index]?.item, TAG.windowWidth) || 256)); }

  async show(seriesUid) {
    document.querySelectorAll("#series li").forEach((li) => li.classList.toggle("current", li.dataset.series === seriesUid));
    let instances;
    try {
      instances = await dicom(`/studies/${this.study}/series/${seriesUid}/instances?includefield=00280008&includefield=00281050&includefield=00281051`, { signal: this.signal });
    } catch (error) {
      if (error.name !== "AbortError") say(error.message, "error");
      return;
    }
    instances.sort((a, b) => Number(first(a, TAG.instanceNumber)) - Number(first(b, TAG.instanceNumber)));
    this.series = seriesUid;
    this.frames = instances.flatMap((item) => {
      const count = Number(first(item, TAG.frames) || 1);
      return Array.from({ length: count }, (_, i) => ({ item, frame: count > 1 ? i + 1 : null }));
    });
    this.slider.max = String(Math.max(1, this.frames.length));
    this.go(0);
  }

  go(index) {
    if (!this.frames.length) return;
    this.index = Math.min(this.frames.length - 1, Math.max(0, index));
    this.slider.value = String(this.index + 1);
    this.draw();
  }

  setZoom(zoom) {
    this.zoom = Math.min(8, Math.max(0.25, zoom));
    this.img.style.transform = `scale(${this.zoom})`;
  }

  /** The rendering of frame `index` at the current window. */
  pathOf(index) {
    const current = this.frames[index];
    const sop = first(current.item, TAG.sopUid);
    const base = `/studies/${this.study}/series/${this.series}/instances/${sop}`;
    const path = current.frame ? `${base}/frames/${current.frame}/rendered` : `${base}/rendered`;
    const windowing = windowParameter(this.center, this.width);
    return windowing ? `${path}?window=${encodeURIComponent(windowing)}` : path;
  }

  /** The next few frames, fetched ahead: a rendering of one frame may be kept a day
   * (Cache-Control), so the browser's cache answers when the user scrolls on. */
  prefetch() {
    this.fetched = this.fetched || new Set();
    for (let step = 1; step <= 3; step += 1) {
      const index = this.index + step;
      if (index >= this.frames.length) break;
      const path = this.pathOf(index);
      if (this.fetched.has(path)) continue;
      this.fetched.add(path);
      call(path, { accept: IMAGE_ACCEPT, signal: this.signal }).then((r) => r.blob(), () => null);
    }
  }

  async draw() {
    const current = this.frames[this.index];
    if (!current) return;
    const windowing = windowParameter(this.center, this.width);
    const wanted = this.pathOf(this.index);
    this.windowText.textContent = windowing ? `W ${this.width} / L ${this.center}` : "own window";
    this.position.textContent = `Frame ${this.index + 1} of ${this.frames.length}`;
    const serial = ++this.serial;
    try {
      const url = await image(wanted, this.signal);
      if (serial !== this.serial) { URL.revokeObjectURL(url); return; }
      const old = this.img.src;
      this.img.src = url;
      this.img.dataset.path = wanted;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      this.prefetch();
    } catch (error) {
      if (error.name !== "AbortError") say(`The frame cannot be shown: ${error.message}`, "error");
    }
  }
}
