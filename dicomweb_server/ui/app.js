// The study list: QIDO-RS on the server's DICOMweb root, nothing else of the server's own.
"use strict";

const ROOT = document.querySelector('meta[name="dicomweb-root"]').content;
const PAGE = 25;
let offset = 0;

function headers() {
  const key = sessionStorage.getItem("apikey");
  return key ? { Accept: "application/dicom+json", "X-API-Key": key } : { Accept: "application/dicom+json" };
}

function text(study, tag) {
  const element = study[tag];
  if (!element || !element.Value || !element.Value.length) return "";
  const value = element.Value[0];
  if (typeof value === "object" && value !== null) return value.Alphabetic || "";
  return element.Value.join(", ");
}

function dicomDate(value) {
  return value ? value.replaceAll("-", "") : "";
}

function query() {
  const form = new FormData(document.getElementById("search"));
  const params = new URLSearchParams();
  for (const name of ["PatientName", "PatientID", "ModalitiesInStudy", "AccessionNumber", "StudyDescription"]) {
    const value = (form.get(name) || "").trim();
    if (value) params.set(name, value);
  }
  const from = dicomDate(form.get("from")), to = dicomDate(form.get("to"));
  if (from || to) params.set("StudyDate", `${from}-${to}`);
  params.set("includefield", "StudyDescription");
  params.set("limit", String(PAGE + 1));
  params.set("offset", String(offset));
  params.set("fuzzymatching", "true");
  return params;
}

async function search() {
  const status = document.getElementById("status");
  status.textContent = "Searching…";
  let answer;
  try {
    answer = await fetch(`${ROOT}/studies?${query()}`, { headers: headers() });
  } catch (error) {
    status.textContent = "The server cannot be reached.";
    return;
  }
  if (!answer.ok) {
    let reason = answer.statusText;
    try { reason = (await answer.json()).error || reason; } catch (_) { /* not JSON */ }
    status.textContent = `${answer.status}: ${reason}`;
    return;
  }
  const found = answer.status === 204 ? [] : await answer.json();
  const rows = document.querySelector("#studies tbody");
  rows.replaceChildren();
  for (const study of found.slice(0, PAGE)) {
    const row = document.createElement("tr");
    row.dataset.study = text(study, "0020000D");
    for (const tag of ["00100010", "00100020", "00080020", "00080061", "00081030", "00080050", "00201206", "00201208"]) {
      const cell = document.createElement("td");
      cell.textContent = text(study, tag);
      row.append(cell);
    }
    rows.append(row);
  }
  const more = found.length > PAGE;
  document.getElementById("next").disabled = !more;
  document.getElementById("previous").disabled = offset === 0;
  const shown = Math.min(found.length, PAGE);
  status.textContent = shown ? `Studies ${offset + 1} to ${offset + shown}${more ? " (more follow)" : ""}` : "No study matches.";
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  search();
});
document.getElementById("next").addEventListener("click", () => { offset += PAGE; search(); });
document.getElementById("previous").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); search(); });
document.getElementById("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("apikey").value.trim();
  if (key) sessionStorage.setItem("apikey", key); else sessionStorage.removeItem("apikey");
  search();
});
search();
