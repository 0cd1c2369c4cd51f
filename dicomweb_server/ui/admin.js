// Administration (scope admin): statistics and the aggregation views, the consistency
// report, API keys, webhook subscriptions and their dead letters, share links, the audit
// log with filters.
import { call, json, sendJson } from "./api.js";
import { field, fill, h, say, table } from "./dom.js";
import { formatBytes } from "./logic.js";

const TABS = [
  ["stats", "Statistics"],
  ["consistency", "Consistency"],
  ["keys", "API keys"],
  ["webhooks", "Webhooks"],
  ["shares", "Share links"],
  ["audit", "Audit log"],
];
// The scopes a key may have (read includes downloading whole objects).
const SCOPES = ["read", "write", "update", "delete", "workitems", "share", "admin"];

const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "—");

/** A table of share links, each active one with its Revoke button (then `reload`); the
 * study column unless they are all of one study. */
export function shareTable(caption, shares, reload, withStudy = true) {
  const columns = [
    ...(withStudy ? [{ label: "Study", cell: (s) => h("a", { href: `#/study/${s.study}` }, s.study) }] : []),
    { label: "Rights", cell: (s) => s.rights }, { label: "Made by", cell: (s) => s.created_by || "" },
    { label: "Made", cell: (s) => when(s.created) },
    { label: "Expires", cell: (s) => when(s.expires) }, { label: "Uses", cell: (s) => `${s.uses}${s.max_uses ? ` of ${s.max_uses}` : ""}` },
    { label: "State", cell: (s) => s.state + (s.code_used ? " (code used)" : "") },
    { label: "", cell: (s) => s.state === "active" || s.code ? h("span", {},
      s.code && !s.revoked ? h("button", { type: "button", class: "new-code", onclick: async (event) => {
        // A one-time code redeems once: a new one for the recipient, shown this once.
        const made = await call(`/shares/${s.id}/code`, { method: "POST", accept: "application/json" });
        const { one_time_code: code } = await made.json();
        event.target.replaceWith(h("output", { class: "one-time-code", "aria-label": "New one-time code" }, `New code: ${code}`));
      } }, "New code") : "", " ",
      s.state === "active" ? h("button", { type: "button", class: "revoke", onclick: async () => {
        await call(`/shares/${s.id}`, { method: "DELETE", accept: "application/json" });
        reload();
      } }, "Revoke") : "") : "" }];
  return table(caption, columns, shares, (s) => ({ dataset: { share: s.id } }));
}

export function render(view, context, [tab = "stats"]) {
  const panel = h("section", { id: "admin-panel", "aria-live": "polite" });
  view.replaceChildren(
    h("h1", {}, "Administration"),
    h("nav", { class: "tabs", "aria-label": "Administration pages" },
      TABS.map(([name, label]) => h("a", { href: `#/admin/${name}`, "aria-current": name === tab ? "page" : null }, label))),
    panel,
  );
  const pages = { stats, consistency, keys, webhooks, shares, audit };
  (pages[tab] || stats)(panel).catch((error) => say(error.message, "error"));
}

async function stats(panel) {
  const totals = await json("/stats");
  const groupBy = h("input", { id: "groupby", name: "groupby", value: "Modality", size: 30 });
  const result = h("div", { id: "aggregate" });
  const form = h("form", { id: "aggregate-form", onsubmit: (e) => { e.preventDefault(); group(); } },
    h("label", { for: "groupby" }, "Group by (keywords, comma-separated)"), " ", groupBy, " ",
    h("select", { name: "level", "aria-label": "Level" }, ["series", "studies", "instances"].map((l) => h("option", { value: l }, l))), " ",
    h("button", { type: "submit" }, "Count"));
  async function group() {
    const level = form.elements.namedItem("level").value;
    const found = await json(`/aggregate/${level}?groupby=${encodeURIComponent(groupBy.value)}`);
    result.replaceChildren(table(`${level} by ${found.groupby.join(", ")}`,
      [...found.groupby.map((name) => ({ label: name, cell: (g) => g.values[name] ?? "(none)" })),
        { label: "Studies", cell: (g) => g.studies }, { label: "Series", cell: (g) => g.series },
        { label: "Instances", cell: (g) => g.instances }, { label: "Size", cell: (g) => formatBytes(g.bytes) }],
      found.groups));
  }
  panel.replaceChildren(h("h2", {}, "Statistics"),
    h("dl", { class: "facts", id: "totals" },
      h("dt", {}, "Studies"), h("dd", {}, totals.studies), h("dt", {}, "Series"), h("dd", {}, totals.series),
      h("dt", {}, "Instances"), h("dd", {}, totals.instances), h("dt", {}, "Size"), h("dd", {}, formatBytes(totals.bytes))),
    form, result);
  await group();
}

async function consistency(panel) {
  const found = await json("/reports/consistency");
  panel.replaceChildren(h("h2", {}, "Consistency of the patient model"),
    found.inconsistencies.length
      ? table("What PS3.4's patient model forbids", [
        { label: "Kind", cell: (x) => x.kind }, { label: "Subject", cell: (x) => x.subject },
        { label: "Values", cell: (x) => x.values.join(" | ") }], found.inconsistencies)
      : h("p", { id: "consistent" }, "No inconsistency found."));
}

async function keys(panel) {
  const made = h("div", { id: "key-made", "aria-live": "polite" });
  const form = h("form", { id: "key-create", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = { name: data.get("name"), scopes: data.getAll("scope") };
    if (data.get("days")) body.expires_in = Math.round(Number(data.get("days")) * 86400);
    try {
      const key = await sendJson("/keys", "POST", body);
      made.replaceChildren(h("p", {}, "The key, shown this once: ", h("code", { id: "new-key" }, key.key || key.secret || "")));
      await list();
    } catch (error) {
      say(`No key made: ${error.message}`, "error");
    }
  } },
  field("Name", { name: "name", required: true }), " ",
  h("fieldset", {}, h("legend", {}, "Scopes"), SCOPES.map((s) => h("label", {}, h("input", { type: "checkbox", name: "scope", value: s, checked: s === "read" }), ` ${s} `))),
  field("Expires in (days)", { name: "days", type: "number", min: "1", placeholder: "never" }), " ",
  h("button", { type: "submit" }, "Create key"));
  const listed = h("div");
  async function list() {
    const found = await json("/keys");
    listed.replaceChildren(table("API keys", [
      { label: "Name", cell: (k) => k.name }, { label: "Scopes", cell: (k) => k.scopes.join(", ") },
      { label: "Created", cell: (k) => when(k.created) }, { label: "Expires", cell: (k) => when(k.expires) },
      { label: "Last used", cell: (k) => when(k.last_used) }, { label: "State", cell: (k) => k.state },
      { label: "", cell: (k) => k.state === "active" ? h("button", { type: "button", class: "revoke", onclick: async () => {
        await call(`/keys/${k.id}`, { method: "DELETE", accept: "application/json" });
        list();
      } }, "Revoke") : "" }], found, (k) => ({ dataset: { key: k.id } })));
  }
  panel.replaceChildren(h("h2", {}, "API keys"), form, made, listed);
  await list();
}

async function webhooks(panel) {
  const made = h("div", { "aria-live": "polite" });
  const letters = h("div", { id: "dead-letters" });
  const form = h("form", { id: "webhook-create", onsubmit: async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { url: data.url };
    if (data.filter) body.filter = data.filter;
    try {
      const sub = await sendJson("/subscriptions", "POST", body);
      made.replaceChildren(h("p", {}, "The signing secret, shown this once: ", h("code", {}, sub.secret)));
      await list();
    } catch (error) {
      say(`No subscription made: ${error.message}`, "error");
    }
  } },
  field("Receiver URL", { name: "url", type: "url", required: true, size: 40 }), " ",
  field("Filter", { name: "filter", placeholder: "modality=CT&action=create" }), " ",
  h("button", { type: "submit" }, "Subscribe"));
  const listed = h("div");
  async function showLetters(sub) {
    const found = await json(`/subscriptions/${sub.id}/dead-letters`);
    fill(letters, h("h3", {}, `Dead letters of ${sub.url}`),
      table("Deliveries that failed every attempt", [
        { label: "Sequence", cell: (d) => d.sequence }, { label: "Attempts", cell: (d) => d.attempts },
        { label: "Last status", cell: (d) => d.last_status ?? "—" }, { label: "Last error", cell: (d) => d.last_error || "" },
        { label: "Failed", cell: (d) => when(d.failed_at) }], found),
      found.length ? h("button", { type: "button", onclick: async () => {
        await sendJson(`/subscriptions/${sub.id}/dead-letters/redrive`, "POST", {});
        say("Sent again.", "ok");
        showLetters(sub);
      } }, "Send all again") : null);
  }
  async function list() {
    const found = await json("/subscriptions");
    listed.replaceChildren(table("Subscriptions", [
      { label: "URL", cell: (s) => s.url }, { label: "Filter", cell: (s) => s.filter || "everything" },
      { label: "State", cell: (s) => s.state + (s.disabled_reason ? ` (${s.disabled_reason})` : "") },
      { label: "Created", cell: (s) => when(s.created) },
      { label: "", cell: (s) => [
        h("button", { type: "button", onclick: () => showLetters(s) }, "Dead letters"), " ",
        s.state === "disabled" ? h("button", { type: "button", onclick: async () => { await sendJson(`/subscriptions/${s.id}/enable`, "POST", {}); list(); } }, "Enable") : null, " ",
        h("button", { type: "button", class: "danger", onclick: async () => { await call(`/subscriptions/${s.id}`, { method: "DELETE", accept: "application/json" }); list(); } }, "Delete"),
      ] }], found));
  }
  panel.replaceChildren(h("h2", {}, "Webhooks"), form, made, listed, letters);
  await list();
}

async function shares(panel) {
  const listed = h("div");
  async function list() {
    listed.replaceChildren(shareTable("Share links", await json("/shares"), list));
  }
  panel.replaceChildren(h("h2", {}, "Share links"), listed);
  await list();
}

async function audit(panel) {
  const form = h("form", { id: "audit-filter", role: "search", onsubmit: (e) => { e.preventDefault(); load(0, true); } },
    field("Since", { name: "since", type: "datetime-local" }), " ",
    field("Study UID", { name: "study", size: 40 }), " ",
    h("button", { type: "submit" }, "Filter"));
  const body = h("tbody");
  const more = h("button", { type: "button", id: "audit-more", hidden: true }, "More");
  let next = null;
  more.addEventListener("click", () => load(next, false));
  async function load(after, fresh) {
    const data = Object.fromEntries(new FormData(form));
    const params = new URLSearchParams({ limit: "100", after: String(after || 0) });
    if (data.since) params.set("since", String(new Date(data.since).getTime() / 1000));
    if (data.study) params.set("study", data.study.trim());
    const found = await json(`/audit?${params}`);
    if (fresh) body.replaceChildren();
    for (const message of found.events) {
      const event = message.EventIdentification || {};
      const who = (message.ActiveParticipant || []).find((p) => p.UserIsRequestor) || {};
      const objects = (message.ParticipantObjectIdentification || []).filter((o) => o.ParticipantObjectTypeCodeRole === "3" && o.ParticipantObjectIDTypeCode && o.ParticipantObjectIDTypeCode["csd-code"] === "110180");
      body.append(h("tr", {},
        h("td", {}, event.EventDateTime || ""), h("td", {}, (event.EventID || {}).originalText || ""),
        h("td", {}, event.EventActionCode || ""), h("td", {}, event.EventOutcomeIndicator === "0" ? "success" : `failure ${event.EventOutcomeIndicator}`),
        h("td", {}, who.UserID || ""), h("td", {}, objects.map((o) => o.ParticipantObjectID).join(", "))));
    }
    next = found.next;
    more.hidden = next === null;
  }
  panel.replaceChildren(h("h2", {}, "Audit log"), form,
    h("div", { class: "scroll" }, h("table", { id: "audit" }, h("caption", {}, "DICOM audit messages (PS3.15 A.5), oldest first"),
      h("thead", {}, h("tr", {}, ["When", "Event", "Action", "Outcome", "Who", "Studies"].map((x) => h("th", { scope: "col" }, x)))), body)),
    more);
  await load(0, true);
}
