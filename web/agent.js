// The hotline agent's app: find a patient by full PESEL, book/move/cancel for them, callbacks.
// The caller's PESEL lives in the look-up field and in `patient` below (memory) only.
import {
  addDays,
  announce,
  api,
  checkPeselInput,
  clearMessages,
  el,
  fillProducts,
  formatDay,
  formatDateTime,
  initPage,
  onLanguageChange,
  openDialog,
  patientText,
  productName,
  run,
  statusText,
  t,
  todayWarsaw,
} from "./app.js";
import { normalisePostcode, renderResults } from "./slots.js";

const $ = (id) => document.getElementById(id);

let patient = null; // {pesel, reason, data: LookupResult}
let moving = null; // the appointment being moved
let lastSearch = null; // {query, result}
let callbacks = [];
let currentCallback = null;
let cancelling = null;

const sess = initPage({ roles: ["agent", "admin"] });
if (sess) start();

function start() {
  fillProducts($("search-product"), { any: true });
  fillProducts($("cb-product"), { any: true });
  fillReasons();
  fillOutcomes();
  $("search-from").value = todayWarsaw();
  $("search-to").value = addDays(todayWarsaw(), 30);
  $("lookup-form").addEventListener("submit", lookup);
  $("forget").addEventListener("click", forget);
  $("search-form").addEventListener("submit", search);
  $("more-results").addEventListener("click", moreResults);
  $("move-stop").addEventListener("click", () => setMoving(null));
  $("cancel-form").addEventListener("submit", cancelAppointment);
  $("callbacks-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    loadCallbacks(e.submitter);
  });
  $("callback-form").addEventListener("submit", addCallback);
  $("done-form").addEventListener("submit", closeCallback);
  $("cb-use-patient").addEventListener("click", () => {
    if (patient) $("cb-pesel").value = patient.pesel;
    else announce(t("agent.no_patient"), "error");
  });
  onLanguageChange(() => {
    fillReasons();
    fillOutcomes();
    renderPatient();
    renderSearchFor();
    renderMoving();
    if (lastSearch) showResults(lastSearch.result, false);
    renderCallbacks();
  });
  renderSearchFor();
  loadCallbacks();
}

function fillReasons() {
  $("reasons").replaceChildren(
    ...["agent.reason_call", "agent.reason_booking", "agent.reason_change"].map((k) =>
      el("option", { value: t(k) }),
    ),
  );
}

function fillOutcomes() {
  const select = $("done-outcome");
  const previous = select.value;
  select.replaceChildren(
    ...["booked", "no_answer", "declined", "not_eligible", "other"].map(
      (o) => new Option(t(`outcome.${o}`), o),
    ),
  );
  if (previous) select.value = previous;
}

// -- the patient ---------------------------------------------------------------------------------
async function lookup(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("lookup-pesel"), $("lookup-pesel-msg"));
  if (!pesel) return;
  const reason = $("lookup-reason").value.trim();
  if (reason.length < 3) {
    $("lookup-reason").setAttribute("aria-invalid", "true");
    announce(t("agent.reason_needed"), "error");
    $("lookup-reason").focus();
    return;
  }
  $("lookup-reason").removeAttribute("aria-invalid");
  patient = null;
  setMoving(null);
  renderPatient();
  renderSearchFor();
  await run(e.submitter, async () => {
    const data = await fetchPatient(pesel, reason);
    patient = { pesel, reason, data };
    if (!$("book-reason").value) $("book-reason").value = reason;
    renderPatient();
    renderSearchFor();
    announce(t("agent.found", { patient: patientText(data.patient) }));
    $("patient").focus();
  });
}

function fetchPatient(pesel, reason) {
  // A read sent as POST so that the PESEL stays out of the URL: no Idempotency-Key.
  return api("POST", "/v1/patients/lookup", { body: { pesel, reason }, idempotent: false });
}

async function refreshPatient() {
  if (!patient) return;
  patient.data = await fetchPatient(patient.pesel, patient.reason);
  renderPatient();
}

function forget() {
  patient = null;
  moving = null;
  $("lookup-form").reset();
  $("book-reason").value = "";
  $("cb-pesel").value = "";
  $("lookup-pesel").removeAttribute("aria-invalid");
  $("lookup-pesel-msg").textContent = "";
  renderPatient();
  renderSearchFor();
  renderMoving();
  clearMessages();
  announce(t("agent.forgotten"));
  $("lookup-pesel").focus();
}

function renderPatient() {
  const section = $("patient");
  if (!patient) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const data = patient.data;
  $("patient-heading").textContent = t("agent.patient_heading", {
    patient: patientText(data.patient),
  });
  $("referrals-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(data.referrals.length
        ? data.referrals.map((r) =>
            el(
              "tr",
              {},
              el("td", { text: t(`referral.${r.kind}`) }),
              el("td", { text: formatDay(r.valid_from) }),
              el("td", { text: formatDay(r.valid_to) }),
              el("td", { text: t(`referral_status.${r.status}`) }),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "4", text: t("agent.no_referrals") }))]),
    );
  $("appointments-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(data.appointments.length
        ? data.appointments.map(appointmentRow)
        : [el("tr", {}, el("td", { colspan: "6", text: t("agent.no_appointments") }))]),
    );
  $("vaccinations-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(data.vaccinations.length
        ? data.vaccinations.map((v) =>
            el(
              "tr",
              {},
              el("td", { text: formatDay(v.given_on) }),
              el("td", { text: productName(v.product) }),
              el("td", { text: t(`dose.${v.dose_kind}`, { n: v.dose_number }) }),
              el("td", { class: "mono", text: v.lot_number || "" }),
              el("td", { text: v.point_id || "" }),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "5", text: t("agent.no_vaccinations") }))]),
    );
}

function appointmentRow(a) {
  const label = `${formatDateTime(a.starts_at)} ${productName(a.product)}`;
  const future = new Date(a.starts_at) > new Date();
  const actions = [];
  if (a.status === "booked" && future) {
    actions.push(
      el("button", {
        type: "button",
        text: t("agent.move"),
        "aria-label": `${t("agent.move")}: ${label}`,
        onclick: () => setMoving(a),
      }),
      el("button", {
        type: "button",
        class: "danger",
        text: t("agent.cancel"),
        "aria-label": `${t("agent.cancel")}: ${label}`,
        onclick: () => openCancel(a),
      }),
    );
  }
  return el(
    "tr",
    { "data-appointment": a.appointment_id, class: `status-${a.status}` },
    el("td", { text: formatDateTime(a.starts_at) }),
    el("td", { text: a.point_id }),
    el("td", { text: productName(a.product) }),
    el("td", { text: t(`dose.${a.dose_kind}`, { n: a.dose_number }) }),
    el("td", { text: statusText(a.status) }),
    el("td", { class: "actions" }, actions.length ? actions : "—"),
  );
}

// -- moving and cancelling -------------------------------------------------------------------------
function setMoving(appointment) {
  moving = appointment;
  renderMoving();
  if (lastSearch) showResults(lastSearch.result, false);
  if (appointment) {
    if (!$("search-product").value) $("search-product").value = appointment.product;
    $("search-postcode").focus();
  }
}

function renderMoving() {
  $("move-banner").hidden = !moving;
  if (moving) {
    $("move-text").textContent = t("agent.moving", {
      when: formatDateTime(moving.starts_at),
      product: productName(moving.product),
      dose: t(`dose.${moving.dose_kind}`, { n: moving.dose_number }),
    });
  }
}

function openCancel(a) {
  cancelling = a;
  $("cancel-visit").textContent = `${formatDateTime(a.starts_at)} · ${a.point_id} · ${productName(
    a.product,
  )} · ${t(`dose.${a.dose_kind}`, { n: a.dose_number })}`;
  $("cancel-reason").value = patient ? patient.reason : "";
  openDialog($("cancel-dialog"));
}

async function cancelAppointment(e) {
  e.preventDefault();
  const reason = $("cancel-reason").value.trim();
  if (reason.length < 3) {
    announce(t("agent.reason_needed"), "error");
    return;
  }
  await run(e.submitter, async () => {
    const result = await api(
      "POST",
      `/v1/appointments/${encodeURIComponent(cancelling.appointment_id)}/cancel`,
      { body: { reason }, action: "cancel" },
    );
    $("cancel-dialog").close();
    await refreshPatient();
    announce(t("agent.cancelled", { n: result.appointments.length }));
    $("patient").focus();
  });
}

// -- slot search, booking ---------------------------------------------------------------------
function renderSearchFor() {
  $("search-for").textContent = patient
    ? t("agent.search_for", { patient: patientText(patient.data.patient) })
    : t("agent.search_no_patient");
}

function searchQuery() {
  const postcode = normalisePostcode($("search-postcode").value);
  if (!postcode) return null;
  return {
    postcode,
    product: $("search-product").value || undefined,
    date_from: $("search-from").value || undefined,
    date_to: $("search-to").value || undefined,
    accessible: $("search-accessible").checked ? "true" : undefined,
    limit: 5,
  };
}

async function search(e) {
  e.preventDefault();
  const query = searchQuery();
  if (!query) {
    $("search-postcode").setAttribute("aria-invalid", "true");
    announce(t("search.postcode_invalid"), "error");
    $("search-postcode").focus();
    return;
  }
  $("search-postcode").removeAttribute("aria-invalid");
  await run(e.submitter, async () => {
    $("results").setAttribute("aria-busy", "true");
    try {
      const result = await api("GET", "/v1/slots", { query });
      lastSearch = { query, result, cursor: result.next_cursor };
      showResults(result, false);
      announce(t("search.found", { n: result.items.length }));
    } finally {
      $("results").setAttribute("aria-busy", "false");
    }
  });
}

async function moreResults(e) {
  if (!lastSearch || !lastSearch.cursor) return;
  await run(e.currentTarget, async () => {
    const result = await api("GET", "/v1/slots", {
      query: { ...lastSearch.query, cursor: lastSearch.cursor },
    });
    lastSearch.cursor = result.next_cursor;
    lastSearch.result = { ...lastSearch.result, items: [...lastSearch.result.items, ...result.items] };
    showResults(result, true);
  });
}

function showResults(result, append) {
  renderResults($("results"), result, {
    append,
    query: lastSearch.query,
    verb: () => (moving ? t("agent.move_here") : t("agent.book")),
    onPick: pick,
  });
  $("more-results").hidden = !(lastSearch && lastSearch.cursor);
}

async function pick(slot, button) {
  if (!patient) {
    announce(t("agent.no_patient"), "error");
    $("lookup-pesel").focus();
    return;
  }
  const reason = ($("book-reason").value || patient.reason).trim();
  if (reason.length < 3) {
    announce(t("agent.reason_needed"), "error");
    $("book-reason").focus();
    return;
  }
  await run(button, async () => {
    let result;
    let message;
    if (moving) {
      result = await api(
        "POST",
        `/v1/appointments/${encodeURIComponent(moving.appointment_id)}/reschedule`,
        { body: { slot_id: slot.slot_id, reason }, action: "reschedule" },
      );
      message = t("agent.moved", { list: describeAppointments(result.appointments) });
      moving = null;
      renderMoving();
    } else {
      result = await api("POST", "/v1/appointments", {
        body: { slot_id: slot.slot_id, pesel: patient.pesel, reason },
        action: "book",
      });
      message = t("agent.booked", { list: describeAppointments(result.appointments) });
    }
    await refreshPatient();
    announce(message);
    const row = document.querySelector(
      `#appointments-table tr[data-appointment="${CSS.escape(result.appointments[0].appointment_id)}"]`,
    );
    if (row) {
      row.setAttribute("tabindex", "-1");
      row.focus();
    }
  });
}

function describeAppointments(list) {
  return list
    .map(
      (a) =>
        `${t(`dose.${a.dose_kind}`, { n: a.dose_number })}: ${formatDateTime(a.starts_at)}, ${a.point_id}`,
    )
    .join("; ");
}

// -- callbacks -------------------------------------------------------------------------------------
async function loadCallbacks(button) {
  await run(button, async () => {
    const data = await api("GET", "/v1/callbacks", { query: { status: $("callbacks-status").value } });
    callbacks = data.callbacks;
    renderCallbacks();
  });
}

function renderCallbacks() {
  const open = $("callbacks-status").value === "open";
  $("callbacks-caption").textContent = t("agent.callbacks_caption", { n: callbacks.length });
  $("callbacks-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(callbacks.length
        ? callbacks.map((c) =>
            el(
              "tr",
              { "data-callback": c.callback_id },
              el("td", { text: formatDateTime(c.created_at) }),
              el("td", { text: c.masked_pesel || "" }),
              el("td", {}, el("a", { href: `tel:${c.phone}`, text: c.phone })),
              el("td", { text: c.preferred_postcode || "" }),
              el("td", { text: c.product ? productName(c.product) : "" }),
              el("td", { text: c.note || "" }),
              el(
                "td",
                { class: "actions" },
                open
                  ? el("button", {
                      type: "button",
                      text: t("agent.mark_done"),
                      "aria-label": `${t("agent.mark_done")}: ${c.phone}`,
                      onclick: () => openDone(c),
                    })
                  : `${t(`outcome.${c.outcome}`)} ${formatDateTime(c.done_at)}`,
              ),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "7", text: t("agent.no_callbacks") }))]),
    );
}

async function addCallback(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("cb-pesel"), $("cb-pesel-msg"));
  if (!pesel) return;
  const phone = $("cb-phone").value.trim();
  if (!/^\+48 ?\d{3} ?\d{3} ?\d{3}$/.test(phone)) {
    $("cb-phone").setAttribute("aria-invalid", "true");
    announce(t("agent.phone_invalid"), "error");
    $("cb-phone").focus();
    return;
  }
  $("cb-phone").removeAttribute("aria-invalid");
  const body = { pesel, phone };
  const postcode = $("cb-postcode").value.trim();
  if (postcode) body.preferred_postcode = normalisePostcode(postcode) || postcode;
  if ($("cb-product").value) body.product = $("cb-product").value;
  if ($("cb-note").value.trim()) body.note = $("cb-note").value.trim();
  await run(e.submitter, async () => {
    await api("POST", "/v1/callbacks", { body, action: "callback" });
    e.target.reset();
    $("callbacks-status").value = "open";
    await loadCallbacks();
    announce(t("agent.callback_added"));
  });
}

function openDone(c) {
  currentCallback = c;
  $("done-callback").textContent = `${c.masked_pesel || ""} · ${c.phone}`;
  $("done-note").value = "";
  openDialog($("done-dialog"));
}

async function closeCallback(e) {
  e.preventDefault();
  const body = { outcome: $("done-outcome").value };
  if ($("done-note").value.trim()) body.note = $("done-note").value.trim();
  await run(e.submitter, async () => {
    await api("POST", `/v1/callbacks/${encodeURIComponent(currentCallback.callback_id)}/done`, {
      body,
      action: "callback-done",
    });
    $("done-dialog").close();
    await loadCallbacks();
    announce(t("agent.callback_closed"));
    $("callbacks").focus();
  });
}
