// The worklist: UPS-RS workitems (PS3.18 chapter 11): search by state and station, create,
// claim (IN PROGRESS with a Transaction UID this tab keeps), complete, cancel; kept live by
// the worklist's change stream.
import { call, dicom, events, sendJson } from "./api.js";
import { field, h, say } from "./dom.js";
import { TAG, can, dicomDateTime, first, text } from "./logic.js";

const DICOM_JSON = "application/dicom+json";
const LOCKS = "dicomweb.claims";

/** A UID of the 2.25 root made from a random UUID (PS3.5 B.2). */
export function newUid() {
  const hex = crypto.randomUUID().replaceAll("-", "");
  return `2.25.${BigInt(`0x${hex}`).toString()}`;
}

function locks() {
  return JSON.parse(sessionStorage.getItem(LOCKS) || "{}");
}

function keepLock(uid, transaction) {
  const all = locks();
  if (transaction) all[uid] = transaction; else delete all[uid];
  sessionStorage.setItem(LOCKS, JSON.stringify(all));
}

function code(value) {
  return value ? { vr: "SQ", Value: [{ "00080100": { vr: "SH", Value: [value] }, "00080102": { vr: "SH", Value: ["99LOCAL"] }, "00080104": { vr: "LO", Value: [value] } }] } : { vr: "SQ" };
}

/** A workitem with every Type 1 and 2 attribute of N-CREATE (PS3.4 Table CC.2.5-3). */
export function newWorkitem(values) {
  const empty = (vr) => ({ vr });
  return {
    "00741200": { vr: "CS", Value: [values.priority || "MEDIUM"] },
    "00741204": { vr: "LO", Value: [values.label] },
    "00741202": { vr: "LO", Value: [values.worklist || "DEFAULT"] },
    "00404025": code(values.station),
    "00404026": empty("SQ"),
    "00404027": empty("SQ"),
    "00404005": { vr: "DT", Value: [values.start ? dicomDateTime(new Date(values.start)) : dicomDateTime(new Date())] },
    "00404018": code(values.label),
    "00404041": { vr: "CS", Value: ["READY"] },
    "00404021": empty("SQ"),
    "00100010": values.patientName ? { vr: "PN", Value: [{ Alphabetic: values.patientName }] } : empty("PN"),
    "00100020": values.patientId ? { vr: "LO", Value: [values.patientId] } : empty("LO"),
    "00100030": empty("DA"),
    "00100040": empty("CS"),
    "00380010": empty("LO"),
    "00380014": empty("SQ"),
    "00081080": empty("LO"),
    "00081084": empty("SQ"),
    "0040A370": values.study ? { vr: "SQ", Value: [{ "0020000D": { vr: "UI", Value: [values.study] }, "00080050": empty("SH"), "00401001": empty("SH"), "00321060": empty("LO"), "00321064": empty("SQ") }] } : empty("SQ"),
    "00741000": { vr: "CS", Value: ["SCHEDULED"] },
  };
}

function changeState(uid, state, transaction) {
  return call(`/workitems/${uid}/state`, {
    method: "PUT",
    accept: DICOM_JSON,
    headers: { "Content-Type": DICOM_JSON },
    body: JSON.stringify([{ "00741000": { vr: "CS", Value: [state] }, "00081195": { vr: "UI", Value: [transaction] } }]),
  });
}

export function render(view, context) {
  const scopes = context.me.scopes;
  const stop = new AbortController();
  const rows = h("tbody");
  const filter = h("form", { id: "worklist-filter", role: "search", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", {}, "State ", h("select", { name: "state" }, ["", "SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"].map((s) => h("option", { value: s }, s || "any")))), " ",
    field("Station", { name: "station", placeholder: "CT-1" }), " ",
    h("button", { type: "submit" }, "Filter"));
  const create = h("form", { id: "worklist-create", hidden: !can(scopes, "workitems"), onsubmit: (e) => { e.preventDefault(); make(); } },
    h("h2", {}, "New workitem"),
    field("Label", { name: "label", required: true, placeholder: "AI triage" }), " ",
    field("Patient name", { name: "patientName" }), " ",
    field("Patient ID", { name: "patientId" }), " ",
    h("label", {}, "Priority ", h("select", { name: "priority" }, ["MEDIUM", "HIGH", "LOW"].map((p) => h("option", { value: p }, p)))), " ",
    field("Worklist", { name: "worklist", placeholder: "DEFAULT" }), " ",
    field("Station", { name: "station" }), " ",
    field("Scheduled", { name: "start", type: "datetime-local" }), " ",
    field("Study UID", { name: "study" }), " ",
    h("button", { type: "submit", id: "workitem-create" }, "Create"));
  view.replaceChildren(h("h1", {}, "Worklist"), filter,
    h("div", { class: "scroll" }, h("table", { id: "workitems" }, h("caption", {}, "Workitems"),
      h("thead", {}, h("tr", {}, ["Label", "Patient", "Priority", "State", "Scheduled", "Station", "Actions"].map((x) => h("th", { scope: "col" }, x)))), rows)),
    create);

  async function make() {
    const values = Object.fromEntries(new FormData(create));
    const uid = newUid();
    try {
      await call(`/workitems?workitem=${encodeURIComponent(uid)}`, {
        method: "POST", accept: DICOM_JSON, headers: { "Content-Type": DICOM_JSON }, body: JSON.stringify([newWorkitem(values)]),
      });
      say("Workitem created.", "ok");
      create.reset();
      load();
    } catch (error) {
      say(`Not created: ${error.message}`, "error");
    }
  }

  async function act(what, uid) {
    try {
      if (what === "claim") {
        const transaction = newUid();
        await changeState(uid, "IN PROGRESS", transaction);
        keepLock(uid, transaction);
      } else if (what === "complete") {
        const transaction = locks()[uid];
        const now = dicomDateTime(new Date());
        // The Final State requirements of PS3.4 Table CC.2.5-3: the performed procedure.
        await call(`/workitems/${uid}?transaction=${encodeURIComponent(transaction)}`, {
          method: "POST", accept: DICOM_JSON, headers: { "Content-Type": DICOM_JSON },
          body: JSON.stringify([{ "00741216": { vr: "SQ", Value: [{ "00404028": { vr: "SQ" }, "00404050": { vr: "DT", Value: [now] }, "00404019": { vr: "SQ" }, "00404051": { vr: "DT", Value: [now] }, "00404033": { vr: "SQ" } }] } }]),
        });
        await changeState(uid, "COMPLETED", transaction);
        keepLock(uid, null);
      } else if (what === "cancel") {
        const transaction = locks()[uid];
        if (transaction) {
          await changeState(uid, "CANCELED", transaction);
          keepLock(uid, null);
        } else {
          await sendJson(`/workitems/${uid}/cancelrequest`, "POST", [{}], DICOM_JSON);
        }
      }
      say(`Workitem ${what === "claim" ? "claimed" : what === "complete" ? "completed" : "canceled"}.`, "ok");
    } catch (error) {
      say(`Not done: ${error.message}`, "error");
    }
    load();
  }

  async function load() {
    const values = Object.fromEntries(new FormData(filter));
    const params = new URLSearchParams({ limit: "200" });
    if (values.state) params.set("ProcedureStepState", values.state);
    if (values.station) params.set("ScheduledStationNameCodeSequence.CodeValue", values.station);
    let found;
    try {
      found = await dicom(`/workitems?${params}`, { signal: stop.signal });
    } catch (error) {
      if (error.name !== "AbortError") say(error.message, "error");
      return;
    }
    const mine = locks();
    const may = can(scopes, "workitems");
    rows.replaceChildren(...found.map((item) => {
      const uid = first(item, TAG.sopUid);
      const state = text(item, TAG.state);
      const station = first(first(item, TAG.stationName) || {}, "00080100");
      const buttons = [];
      if (may && state === "SCHEDULED") {
        buttons.push(h("button", { type: "button", class: "claim", onclick: () => act("claim", uid) }, "Claim"));
        buttons.push(h("button", { type: "button", class: "cancel", onclick: () => act("cancel", uid) }, "Cancel"));
      }
      if (may && state === "IN PROGRESS" && mine[uid]) {
        buttons.push(h("button", { type: "button", class: "complete", onclick: () => act("complete", uid) }, "Complete"));
        buttons.push(h("button", { type: "button", class: "cancel", onclick: () => act("cancel", uid) }, "Cancel"));
      }
      return h("tr", { dataset: { workitem: uid, state } },
        h("td", {}, text(item, TAG.label)), h("td", {}, text(item, TAG.patientName)), h("td", {}, text(item, TAG.priority)),
        h("td", {}, state), h("td", {}, text(item, TAG.start)), h("td", {}, station || ""), h("td", {}, buttons));
    }));
  }

  // Live without polling: the worklist's change stream (Server-Sent Events read with fetch,
  // the credential in a header) says when any workitem changed; a burst makes one reload.
  let pending = null;
  events("/workitems/stream", (event) => {
    if (event.event !== "changed" || pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 200);
  }, stop.signal);
  load();
  return () => { stop.abort(); if (pending) clearTimeout(pending); };
}

