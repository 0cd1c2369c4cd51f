// Unit tests of the web application's own logic (dicomweb_server/ui/logic.js), run with
// Node's test runner by tests/unit/test_ui_logic.py.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

const logic = await import(process.env.UI_LOGIC);

test("values and text of DICOM JSON (PS3.18 F.2)", () => {
  const item = {
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] },
    "00080061": { vr: "CS", Value: ["CT", "PR"] },
    "00201208": { vr: "IS", Value: [12] },
    "00081030": { vr: "LO" },
  };
  assert.equal(logic.text(item, "00100010"), "Doe^Jane");
  assert.equal(logic.text(item, "00080061"), "CT, PR");
  assert.equal(logic.text(item, "00201208"), "12");
  assert.equal(logic.text(item, "00081030"), "");
  assert.equal(logic.text(item, "00200010"), "");
  assert.equal(logic.first(item, "00080061"), "CT");
  assert.deepEqual(logic.values(undefined, "00100010"), []);
});

test("dates both ways", () => {
  assert.equal(logic.dicomDate("2026-01-31"), "20260131");
  assert.equal(logic.showDate("20260131"), "2026-01-31");
  assert.equal(logic.showDate("2026"), "2026");
  assert.equal(logic.dicomDateTime(new Date(2026, 0, 2, 3, 4, 5)), "20260102030405");
});

test("the study query: fields, a range, other attributes, one row past the page", () => {
  const params = logic.studyQuery(
    { PatientName: " Doe* ", PatientID: "", from: "2026-01-01", to: "2026-01-31", other: "InstitutionName=Gen* 00080090=Welby" },
    50,
    25,
  );
  assert.equal(params.get("PatientName"), "Doe*");
  assert.equal(params.has("PatientID"), false);
  assert.equal(params.get("StudyDate"), "20260101-20260131");
  assert.equal(params.get("InstitutionName"), "Gen*");
  assert.equal(params.get("00080090"), "Welby");
  assert.equal(params.get("limit"), "26");
  assert.equal(params.get("offset"), "50");
  assert.equal(logic.studyQuery({ from: "2026-02-03", to: "2026-02-03" }, 0, 25).get("StudyDate"), "20260203");
  assert.equal(logic.studyQuery({ from: "2026-02-03" }, 0, 25).get("StudyDate"), "20260203-");
  params.set("orderby", "-00080020");
  const keys = logic.matchingKeys(params);
  assert.equal(["limit", "offset", "includefield", "orderby"].some((k) => keys.has(k)), false);
  assert.equal(keys.get("PatientName"), "Doe*");
});

test("Server-Sent Events: whole events only, comments skipped, CRLF taken", () => {
  const { events, rest } = logic.parseEvents(": hello\n\nid: 7\nevent: create\ndata: {\"a\":1}\n\nid: 8\r\nevent: delete\r\ndata: x\r\n\r\nid: 9\ndata: par");
  assert.deepEqual(events, [
    { id: "7", event: "create", data: "{\"a\":1}" },
    { id: "8", event: "delete", data: "x" },
  ]);
  assert.equal(rest, "id: 9\ndata: par");
  const more = logic.parseEvents(rest + "t\ndata: two\n\n");
  assert.deepEqual(more.events, [{ id: "9", event: "message", data: "part\ntwo" }]);
});

test("PKCE S256 (RFC 7636 4.2)", async () => {
  const { verifier, challenge } = await logic.pkcePair();
  assert.match(verifier, /^[A-Za-z0-9_-]{43,128}$/);
  const expected = createHash("sha256").update(verifier).digest("base64url");
  assert.equal(challenge, expected);
  // RFC 7636 Appendix B.
  assert.equal(logic.base64url(new Uint8Array([3, 236, 255, 224, 193])), "A-z_4ME");
});

test("STOW-RS outcomes (PS3.18 10.5.3)", () => {
  assert.deepEqual(logic.stowOutcome(200, [{}]), { ok: true, reason: "" });
  const failed = { "00081198": { vr: "SQ", Value: [{ "00081197": { vr: "US", Value: [0xc000] } }] } };
  assert.deepEqual(logic.stowOutcome(409, failed), { ok: false, reason: "cannot understand (failure reason 0xC000)" });
  const commented = { "00081198": { vr: "SQ", Value: [{ "00081197": { vr: "US", Value: [0xa900] }, "00000902": { vr: "LO", Value: ["not a DICOM file"] } }] } };
  assert.equal(logic.stowOutcome(409, commented).reason, "not a DICOM file (failure reason 0xA900)");
  const warned = { "00081199": { vr: "SQ", Value: [{ "00081196": { vr: "US", Value: [0xb000] } }] } };
  assert.deepEqual(logic.stowOutcome(202, warned), { ok: true, reason: "stored with warning 0xB000" });
  assert.deepEqual(logic.stowOutcome(413, { error: "too large" }), { ok: false, reason: "too large" });
  assert.deepEqual(logic.stowOutcome(502, null), { ok: false, reason: "the server answered 502" });
});

test("window: presets, drag and the rendered parameter (PS3.18 8.3.5.1.4)", () => {
  assert.equal(logic.windowParameter(null, null), "");
  assert.equal(logic.windowParameter(-600, 1500), "-600,1500,linear");
  assert.deepEqual(logic.dragWindow(40, 400, 10, -5), { center: 20, width: 440 });
  assert.deepEqual(logic.dragWindow(40, 10, -100, 0), { center: 40, width: 1 });
  assert.ok(logic.PRESETS.some((p) => p.name === "Lung" && p.center === -600));
});

test("scopes, sizes, the STOW part", () => {
  assert.equal(logic.can(["read", "write"], "write"), true);
  assert.equal(logic.can(["read"], "admin"), false);
  assert.equal(logic.can(undefined, "read"), false);
  assert.equal(logic.formatBytes(512), "512 B");
  assert.equal(logic.formatBytes(1536), "1.5 KB");
  assert.equal(logic.formatBytes(5 * 1024 ** 3), "5.0 GB");
  const part = logic.stowFrame("B");
  assert.equal(part.head, "--B\r\nContent-Type: application/dicom\r\n\r\n");
  assert.equal(part.tail, "\r\n--B--\r\n");
  assert.equal(part.type, 'multipart/related; type="application/dicom"; boundary=B');
  assert.equal(logic.hex(49152), "0xC000");
});
