// The study list: QIDO-RS search (PS3.18 10.6) on any attribute, sorted by the server
// (orderby) and paged, with the matching total (GET /aggregate/studies), the archive's
// totals (GET /stats), thumbnails, and kept live by the change feed's event stream.
import { dicom, events, image, json } from "./api.js";
import { field, h, say } from "./dom.js";
import { TAG, first, formatBytes, matchingKeys, showDate, studyQuery, text } from "./logic.js";

const PAGE = 25;
const COLUMNS = [
  { label: "Patient", tag: TAG.patientName },
  { label: "Patient ID", tag: TAG.patientId },
  { label: "Date", tag: TAG.studyDate, show: showDate },
  { label: "Modalities", tag: TAG.modalities },
  { label: "Description", tag: TAG.studyDescription },
  { label: "Accession", tag: TAG.accession },
  { label: "Series", tag: TAG.seriesCount },
  { label: "Instances", tag: TAG.studyInstances },
];
// The form's fields survive a visit to a study.
let remembered = {};

export function render(view, context) {
  const stop = new AbortController();
  let offset = Number(context.params.get("offset") || 0);
  let found = [];
  // Newest first until a heading is clicked (an index serves it: migration 0018).
  let sort = { index: 2, descending: true };
  const inputs = {
    PatientName: field("Patient name", { name: "PatientName", placeholder: "Doe*" }),
    PatientID: field("Patient ID", { name: "PatientID" }),
    from: field("From", { name: "from", type: "date" }),
    to: field("To", { name: "to", type: "date" }),
    ModalitiesInStudy: field("Modality", { name: "ModalitiesInStudy", size: 4, placeholder: "CT" }),
    AccessionNumber: field("Accession", { name: "AccessionNumber" }),
    StudyDescription: field("Description", { name: "StudyDescription", placeholder: "*chest*" }),
    other: field("Other attributes", { name: "other", placeholder: "InstitutionName=General*", size: 24 }),
  };
  const form = h("form", { id: "search", role: "search", onsubmit: (e) => { e.preventDefault(); offset = 0; search(); } },
    Object.values(inputs), h("button", { type: "submit" }, "Search"));
  for (const [name, value] of Object.entries(remembered)) {
    const input = form.elements.namedItem(name);
    if (input) input.value = value;
  }
  const totals = h("p", { id: "totals" });
  const live = h("span", { id: "live", class: "live", title: "New studies appear here without a reload" });
  const body = h("tbody");
  const head = h("tr", {}, h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Thumbnail")),
    COLUMNS.map((c, i) => h("th", { scope: "col", "aria-sort": "none" },
      h("button", { type: "button", class: "sort", onclick: () => {
        sort = { index: i, descending: sort && sort.index === i ? !sort.descending : false };
        offset = 0;
        search();
      } }, c.label))));
  const previous = h("button", { type: "button", id: "previous", disabled: true, onclick: () => { offset = Math.max(0, offset - PAGE); search(); } }, "Previous");
  const next = h("button", { type: "button", id: "next", disabled: true, onclick: () => { offset += PAGE; search(); } }, "Next");
  view.replaceChildren(
    h("h1", {}, "Studies ", live),
    form,
    totals,
    h("div", { class: "scroll" }, h("table", { id: "studies" }, h("caption", {}, "Matching studies"), h("thead", {}, head), body)),
    h("nav", { "aria-label": "Result pages", class: "pages" }, previous, next),
  );

  function fields() {
    const values = Object.fromEntries(new FormData(form));
    remembered = values;
    return values;
  }

  function draw() {
    const rows = found.slice(0, PAGE);
    head.querySelectorAll("th[aria-sort]").forEach((th, i) => {
      th.setAttribute("aria-sort", sort && sort.index === i ? (sort.descending ? "descending" : "ascending") : "none");
    });
    body.replaceChildren(...rows.map((studyItem) => {
      const uid = first(studyItem, TAG.studyUid);
      const thumb = h("img", { alt: "", class: "thumb", width: 48, height: 48 });
      image(`/studies/${uid}/thumbnail?viewport=96,96`, stop.signal).then((url) => { thumb.src = url; }, () => thumb.classList.add("none"));
      return h("tr", { dataset: { study: uid } }, h("td", {}, thumb), COLUMNS.map((c, i) => {
        const value = text(studyItem, c.tag);
        const shown = c.show ? c.show(value) : value;
        return h("td", {}, i === 0 ? h("a", { href: `#/study/${uid}` }, shown || "(no name)") : shown);
      }));
    }));
  }

  async function count(params) {
    try {
      const [matching, all] = await Promise.all([
        json(`/aggregate/studies?${matchingKeys(params)}`, { signal: stop.signal }),
        json("/stats", { signal: stop.signal }),
      ]);
      const total = matching.groups.length ? matching.groups[0].studies : 0;
      totals.textContent = `${total} matching ${total === 1 ? "study" : "studies"}; the archive holds ` +
        `${all.studies} studies, ${all.series} series, ${all.instances} instances (${formatBytes(all.bytes)}).`;
      return total;
    } catch (error) {
      totals.textContent = "";
      return null;
    }
  }

  async function search() {
    const params = studyQuery(fields(), offset, PAGE);
    if (sort) params.set("orderby", `${sort.descending ? "-" : ""}${COLUMNS[sort.index].tag}`);
    say("Searching…");
    try {
      found = await dicom(`/studies?${params}`, { signal: stop.signal });
    } catch (error) {
      if (error.name !== "AbortError") say(error.message, "error");
      return;
    }
    draw();
    const total = await count(params);
    const shown = Math.min(found.length, PAGE);
    const more = found.length > PAGE;
    next.disabled = !more;
    previous.disabled = offset === 0;
    say(shown ? `Studies ${offset + 1} to ${offset + shown}${total !== null ? ` of ${total}` : more ? " (more follow)" : ""}` : "No study matches.");
  }

  // Live: a stored, changed or deleted study redraws the list soon after (a burst of
  // stores makes one redraw), and at most once a second and a half while they go on.
  let pending = null;
  let drawn = 0;
  events("/changefeed/stream", () => {
    if (pending) return;
    const wait = Math.max(300, drawn + 1500 - Date.now());
    pending = setTimeout(() => { pending = null; drawn = Date.now(); search(); }, wait);
  }, stop.signal);
  live.textContent = "live";
  search();
  return () => { stop.abort(); if (pending) clearTimeout(pending); };
}

