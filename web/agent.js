// The hotline agent's app: find a patient by full PESEL, book/move/cancel for them (with a
// review read out to the caller), callbacks. The caller's PESEL lives in the look-up field
// and in `patient` below (memory) only; "End call" forgets everything about the caller.
import {
  ApiError,
  addDays,
  announce,
  api,
  checkPeselInput,
  clearMessages,
  doseText,
  dosesText,
  el,
  errorText,
  fillProducts,
  formatDay,
  formatDateTime,
  initPage,
  labelCells,
  onLanguageChange,
  openDialog,
  patientText,
  placeBlock,
  placeText,
  productInfo,
  productName,
  rememberProducts,
  run,
  showError,
  statusText,
  t,
  todayWarsaw,
} from "./app.js";
import { bookingReference, confirmationContent, planSecondDose, reviewContent } from "./booking.js";
import { fillPartsOfDay, normalisePostcode, renderResults, takeSeat } from "./slots.js";
import { QueuePanel, aboutOpening, governs, listOpenings, memoryTicketStore } from "./queue.js";

const $ = (id) => document.getElementById(id);

let patient = null; // {pesel, reason, data: LookupResult, eligible: EligibleProducts}
let moving = null; // the appointment being moved
let lastSearch = null; // {query, result, cursor}
let callbacks = [];
let currentCallback = null;
let cancelling = null;
let reviewing = null; // {slot, point, info, second, candidates, moving}
let lastDone = null; // {appointments, confirmation, moved}
// The waiting room of an opening that governs the caller's booking (web/queue.js): the agent
// joins the caller at the moment of the call and books with that ticket on the caller's turn.
// The ticket is the caller's: kept in memory only, forgotten with the caller.
const tickets = memoryTicketStore();
let queue = null;

const sess = initPage({ roles: ["agent", "admin"] });
if (sess) start();

function start() {
  queue = new QueuePanel($("panels"), {
    audience: "caller",
    store: tickets,
    joinBody: () => ({ pesel: patient.pesel, reason: patient.reason }),
    subject: () => (patient ? t("queue.caller_subject", { patient: patientText(patient.data.patient) }) : ""),
    actions: () =>
      reviewing && !reviewing.moving && patient
        ? [el("button", { type: "button", class: "primary", text: t("queue.book_now"), onclick: reopenReview })]
        : [],
  });
  fillPartsOfDay($("search-part"));
  fillSearchProducts();
  fillProducts($("cb-product"), [], { any: true });
  fillReasons();
  fillOutcomes();
  resetSearchDates();
  $("lookup-form").addEventListener("submit", lookup);
  $("forget").addEventListener("click", forget);
  $("search-form").addEventListener("submit", search);
  $("search-product").addEventListener("change", renderProductHint);
  $("search-part").addEventListener("change", () => lastSearch && showResults(lastSearch.result, false));
  $("more-results").addEventListener("click", moreResults);
  $("move-stop").addEventListener("click", () => setMoving(null));
  $("cancel-form").addEventListener("submit", cancelAppointment);
  $("review-form").addEventListener("submit", confirmReview);
  $("callbacks-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    loadCallbacks(e.submitter);
  });
  $("callback-form").addEventListener("submit", addCallback);
  $("done-form").addEventListener("submit", closeCallback);
  $("cb-use-patient").addEventListener("click", () => {
    if (patient) $("cb-pesel").value = patient.pesel;
    else announce(() => t("agent.no_patient"), "error");
  });
  onLanguageChange(() => {
    fillReasons();
    fillOutcomes();
    fillPartsOfDay($("search-part"));
    fillSearchProducts();
    fillProducts($("cb-product"), callbackProducts(), { any: true });
    renderPatient();
    renderSearchFor();
    renderMoving();
    if (lastSearch) showResults(lastSearch.result, false);
    renderCallbacks();
    renderDone();
    if (reviewing && $("review-dialog").open) renderReview();
  });
  renderSearchFor();
  loadCallbacks();
}

function resetSearchDates() {
  $("search-from").value = todayWarsaw();
  $("search-to").value = addDays(todayWarsaw(), 30);
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

// -- which vaccines: the caller's own, from the rules in force ------------------------------
function eligibleCodes() {
  return patient && patient.eligible ? patient.eligible.products.map((p) => p.product) : [];
}

function callbackProducts() {
  return patient && patient.eligible ? eligibleCodes() : [];
}

function fillSearchProducts() {
  const select = $("search-product");
  if (moving) {
    fillProducts(select, [moving.product]);
    select.value = moving.product;
  } else if (patient && patient.eligible) {
    fillProducts(select, eligibleCodes());
    if (!select.value && select.options.length) select.value = select.options[0].value;
  } else {
    fillProducts(select, [], { any: true, anyKey: "product.any_agent" });
  }
  renderProductHint();
}

function eligibleInfo(code) {
  return patient && patient.eligible ? patient.eligible.products.find((p) => p.product === code) : null;
}

function hasBooking() {
  return Boolean(patient && patient.eligible && patient.eligible.products.some((p) => p.booked_appointment_id));
}

function renderProductHint() {
  const hint = $("product-hint");
  const code = $("search-product").value;
  if (!patient || !patient.eligible) {
    hint.textContent = "";
    return;
  }
  if (!patient.eligible.products.length) {
    const first = patient.eligible.not_eligible[0];
    const why = first ? errorText(new ApiError(403, first.code, first.message, first.details || {})) : "";
    hint.textContent = t("agent.no_products", { why });
    return;
  }
  hint.textContent = code ? `${productName(code)}: ${dosesText(productInfo(code))}` : "";
}

// -- the patient ---------------------------------------------------------------------------------
async function lookup(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("lookup-pesel"), $("lookup-pesel-msg"));
  if (!pesel) return;
  const reason = $("lookup-reason").value.trim();
  if (reason.length < 3) {
    $("lookup-reason").setAttribute("aria-invalid", "true");
    announce(() => t("agent.reason_needed"), "error");
    $("lookup-reason").focus();
    return;
  }
  $("lookup-reason").removeAttribute("aria-invalid");
  patient = null;
  reviewing = null;
  forgetQueue();
  lastDone = null;
  setMoving(null);
  clearResults();
  renderPatient();
  renderSearchFor();
  await run(e.submitter, async () => {
    const [data, eligible] = await Promise.all([fetchPatient(pesel, reason), fetchEligible(pesel, reason)]);
    patient = { pesel, reason, data, eligible };
    if (!$("book-reason").value) $("book-reason").value = reason;
    fillSearchProducts();
    fillProducts($("cb-product"), callbackProducts(), { any: true });
    renderPatient();
    renderSearchFor();
    renderDone();
    announce(() => t("agent.found", { patient: patientText(data.patient) }));
    $("patient").focus();
  });
  await syncQueue();
}

// -- the waiting room of an opening -----------------------------------------------------------
/** Show the room of an opening that governs the caller (by birth year), unless they have
 * their visit booked; a refused booking shows it too (queue.refused). */
async function syncQueue() {
  if (!patient || hasBooking()) {
    queue.hide();
    return;
  }
  const caller = patient;
  let openings;
  try {
    openings = await listOpenings();
  } catch {
    return;
  }
  if (patient !== caller) return;
  const opening = openings.find((o) => governs(o, caller.data.patient && caller.data.patient.birth_year));
  if (opening) queue.show(opening);
  else queue.hide();
}

function forgetQueue() {
  tickets.clear();
  if (queue) queue.hide();
}

/** On the caller's turn: the review of the slot chosen before, then "Book" (with the ticket). */
function reopenReview() {
  if (!reviewing || !patient) return;
  renderReview();
  openDialog($("review-dialog"), $("review-ok"));
}

function fetchPatient(pesel, reason) {
  // A read sent as POST so that the PESEL stays out of the URL: no Idempotency-Key.
  return api("POST", "/v1/patients/lookup", { body: { pesel, reason }, idempotent: false });
}

async function fetchEligible(pesel, reason) {
  const eligible = await api("POST", "/v1/patients/eligible-products", {
    body: { pesel, reason, date: todayWarsaw() },
    idempotent: false,
  });
  rememberProducts([...eligible.products, ...eligible.not_eligible]);
  return eligible;
}

async function refreshPatient() {
  if (!patient) return;
  const [data, eligible] = await Promise.all([
    fetchPatient(patient.pesel, patient.reason),
    fetchEligible(patient.pesel, patient.reason),
  ]);
  patient.data = data;
  patient.eligible = eligible;
  fillSearchProducts();
  fillProducts($("cb-product"), callbackProducts(), { any: true });
  renderPatient();
}

function clearResults() {
  lastSearch = null;
  $("results").replaceChildren();
  $("more-results").hidden = true;
}

/** End of the call: nothing of the caller stays on the screen or in memory. */
function forget() {
  forgetQueue();
  patient = null;
  moving = null;
  reviewing = null;
  lastDone = null;
  cancelling = null;
  $("lookup-form").reset();
  $("search-form").reset();
  $("callback-form").reset();
  $("book-reason").value = "";
  $("cb-pesel").value = "";
  $("review-reason").value = "";
  $("cancel-reason").value = "";
  for (const id of ["lookup-pesel", "search-postcode", "cb-pesel"]) $(id).removeAttribute("aria-invalid");
  $("lookup-pesel-msg").textContent = "";
  resetSearchDates();
  clearResults();
  fillSearchProducts();
  fillProducts($("cb-product"), [], { any: true });
  renderPatient();
  renderSearchFor();
  renderMoving();
  renderDone();
  clearMessages();
  announce(() => t("agent.forgotten"));
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
              el("td", { text: doseText(v) }),
              el("td", { class: "mono", text: v.lot_number || "" }),
              el("td", {}, placeBlock(v.point, v.point_id || "")),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "5", text: t("agent.no_vaccinations") }))]),
    );
  for (const id of ["referrals-table", "appointments-table", "vaccinations-table"]) labelCells($(id));
}

function appointmentRow(a) {
  const label = `${formatDateTime(a.starts_at)} ${productName(a.product)} ${doseText(a)}`;
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
    el("td", {}, placeBlock(a.point, a.point_id, { phone: true })),
    el("td", { text: productName(a.product) }),
    el("td", { text: doseText(a) }),
    el("td", { text: statusText(a.status) }),
    el("td", { class: "actions" }, actions.length ? actions : "—"),
  );
}

function renderDone() {
  const box = $("agent-confirmation");
  if (!lastDone || !patient) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  box.replaceChildren(
    el("h3", { text: t(lastDone.moved ? "confirm.heading_moved" : "confirm.heading") }),
    ...confirmationContent(lastDone.appointments, lastDone.confirmation, {
      heading: lastDone.moved ? "agent.confirm_moved" : "agent.confirm_booked",
      smsText: "agent.sms_text",
    }).filter(Boolean),
  );
}

// -- moving and cancelling -------------------------------------------------------------------------
function setMoving(appointment) {
  moving = appointment;
  clearResults();
  renderMoving();
  fillSearchProducts();
  if (appointment) {
    const info = productInfo(appointment.product);
    const linked =
      appointment.linked_appointment_id &&
      patient &&
      patient.data.appointments.find((b) => b.appointment_id === appointment.linked_appointment_id);
    if (appointment.dose_number === 2 && linked && info && info.doses === 2) {
      const first = linked.starts_at.slice(0, 10);
      const from = [todayWarsaw(), addDays(first, info.min_interval_days)].sort().pop();
      $("search-from").value = from;
      $("search-to").value = [addDays(first, info.max_interval_days), addDays(from, 60)].sort()[0];
    } else {
      resetSearchDates();
    }
    $("search-postcode").focus();
  }
  renderSearchFor();
}

function renderMoving() {
  $("move-banner").hidden = !moving;
  if (moving) {
    $("move-text").textContent = t("agent.moving", {
      when: formatDateTime(moving.starts_at),
      product: productName(moving.product),
      dose: doseText(moving),
    });
  }
}

function cancelEffect(a) {
  const linked =
    a.linked_appointment_id &&
    patient &&
    patient.data.appointments.find((b) => b.appointment_id === a.linked_appointment_id);
  if (a.dose_number === 1 && linked && linked.status === "booked") {
    return t("agent.cancel_effect_both", { when: formatDateTime(linked.starts_at) });
  }
  if (a.dose_number === 2) return t("agent.cancel_effect_dose2");
  return t("agent.cancel_effect_single");
}

function openCancel(a) {
  cancelling = a;
  $("cancel-visit").textContent = `${formatDateTime(a.starts_at)} · ${placeText(a.point, a.point_id)} · ${productName(
    a.product,
  )} · ${doseText(a)}`;
  $("cancel-effect").textContent = cancelEffect(a);
  $("cancel-reason").value = patient ? patient.reason : "";
  // The safe choice has the focus.
  openDialog($("cancel-dialog"), $("cancel-back"));
}

function describeAppointments(list) {
  return list.map((a) => `${doseText(a)}: ${formatDateTime(a.starts_at)}, ${placeText(a.point, a.point_id)}`).join("; ");
}

async function cancelAppointment(e) {
  e.preventDefault();
  const reason = $("cancel-reason").value.trim();
  if (reason.length < 3) {
    announce(() => t("agent.reason_needed"), "error");
    return;
  }
  await run(e.submitter, async () => {
    const result = await api(
      "POST",
      `/v1/appointments/${encodeURIComponent(cancelling.appointment_id)}/cancel`,
      { body: { reason }, action: "cancel" },
    );
    $("cancel-dialog").close();
    if (moving && result.appointments.some((a) => a.appointment_id === moving.appointment_id)) setMoving(null);
    lastDone = null;
    await refreshPatient();
    renderDone();
    if (lastSearch) showResults(lastSearch.result, false);
    const list = result.appointments;
    announce(() => t("agent.cancelled_list", { list: describeAppointments(list) }));
    $("patient").focus();
  });
}

// -- slot search, review, booking ---------------------------------------------------------------
function renderSearchFor() {
  let text = t("agent.search_no_patient");
  if (patient) {
    text = t("agent.search_for", { patient: patientText(patient.data.patient) });
    if (hasBooking() && !moving) text += ` ${t("agent.has_booking")}`;
  }
  $("search-for").textContent = text;
}

function searchQuery() {
  const postcode = normalisePostcode($("search-postcode").value);
  if (!postcode) return null;
  const product = $("search-product").value || undefined;
  const info = product && !moving ? eligibleInfo(product) : null;
  let from = $("search-from").value || todayWarsaw();
  let to = $("search-to").value || addDays(from, 30);
  if (info && info.date_from > from) from = info.date_from;
  if (info && info.date_to && info.date_to < to) to = info.date_to;
  return {
    postcode,
    product,
    date_from: from,
    date_to: to,
    accessible: $("search-accessible").checked ? "true" : undefined,
    limit: 5,
  };
}

async function search(e) {
  e.preventDefault();
  const query = searchQuery();
  if (!query) {
    $("search-postcode").setAttribute("aria-invalid", "true");
    announce(() => t("search.postcode_invalid"), "error");
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
      announce(() => t("search.found", { n: result.items.length }));
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

/** What a slot button does now: move, book, or nothing (the caller has this dose booked). */
function slotVerb(slot) {
  if (moving) return slot.slot_id === moving.slot_id ? null : t("agent.move_here");
  if (hasBooking()) return null;
  return t("agent.book");
}

function showResults(result, append) {
  renderResults($("results"), result, {
    append,
    query: lastSearch.query,
    part: $("search-part").value,
    verb: Object.assign((slot) => slotVerb(slot), {
      note: (slot) => (moving && slot.slot_id === moving.slot_id ? t("search.current_slot") : ""),
    }),
    onPick: pick,
  });
  $("more-results").hidden = !(lastSearch && lastSearch.cursor);
  renderSearchFor();
}

async function pick(slot, button, point) {
  if (!patient) {
    announce(() => t("agent.no_patient"), "error");
    $("lookup-pesel").focus();
    return;
  }
  const info = moving ? productInfo(slot.product) : eligibleInfo(slot.product);
  await run(button, async () => {
    let second = null;
    let candidates = [];
    if (!moving && info && info.doses === 2 && info.books_second_dose) {
      ({ choice: second, candidates } = await planSecondDose(point, slot, info));
    }
    reviewing = { slot, point, info, second, candidates, moving };
    renderReview();
    $("review-reason").value = ($("book-reason").value || patient.reason).trim();
    openDialog($("review-dialog"), $("review-ok"));
  });
}

function renderReview() {
  const r = reviewing;
  $("review-title").textContent = t(r.moving ? "agent.review_title_move" : "agent.review_title");
  $("review-body").replaceChildren(
    ...reviewContent({
      first: r.slot,
      second: r.second,
      candidates: r.candidates,
      point: r.point,
      info: r.info,
      moving: r.moving,
      onSecond: (s) => {
        r.second = s;
        $("review-body").querySelector(".review-dose2").textContent = formatDateTime(s.starts_at);
      },
    }).filter(Boolean),
  );
  $("review-ok").textContent = t(r.moving ? "agent.review_confirm_move" : "agent.review_confirm");
  $("review-ok").disabled = Boolean(!r.moving && r.info && r.info.doses === 2 && r.info.books_second_dose && !r.second);
}

async function confirmReview(e) {
  e.preventDefault();
  const r = reviewing;
  const reason = $("review-reason").value.trim();
  if (reason.length < 3) {
    $("review-reason").setAttribute("aria-invalid", "true");
    announce(() => t("agent.reason_needed"), "error");
    $("review-reason").focus();
    return;
  }
  $("review-reason").removeAttribute("aria-invalid");
  await run(e.submitter, async () => {
    let result;
    try {
      if (r.moving) {
        result = await api("POST", `/v1/appointments/${encodeURIComponent(r.moving.appointment_id)}/reschedule`, {
          body: { slot_id: r.slot.slot_id, reason },
          action: "reschedule",
        });
      } else {
        const body = { slot_id: r.slot.slot_id, pesel: patient.pesel, reason };
        if (r.second) body.second_slot_id = r.second.slot_id;
        result = await api("POST", "/v1/appointments", { body, action: "book", headers: queue.headers() });
      }
    } catch (err) {
      // An opening governs the caller's booking: its room shows the caller's place; the
      // chosen slot is kept for "Book the chosen slot" when the caller's turn comes.
      if (aboutOpening(err)) {
        $("review-dialog").close();
        if (await queue.refused(err)) {
          showError(err);
          return;
        }
      }
      if (err instanceof ApiError && err.code === "slot_unavailable") {
        $("review-dialog").close();
        showError(err);
        return;
      }
      throw err;
    }
    $("review-dialog").close();
    const list = result.appointments;
    lastDone = { appointments: list, confirmation: result.confirmation, moved: Boolean(r.moving) };
    // The shown results lose the taken seats; the buttons follow what the caller now has.
    takeSeat(lastSearch && lastSearch.result, list.map((a) => a.slot_id));
    moving = null;
    renderMoving();
    if (!r.moving) reviewing = null;
    await refreshPatient();
    await syncQueue();
    if (lastSearch) showResults(lastSearch.result, false);
    renderDone();
    const ref = bookingReference(list);
    announce(() =>
      r.moving
        ? t("agent.moved_list", { list: describeAppointments(list) })
        : t("agent.booked_list", { list: describeAppointments(list), ref }),
    );
    $("agent-confirmation").focus();
  });
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
  labelCells($("callbacks-table"));
}

async function addCallback(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("cb-pesel"), $("cb-pesel-msg"));
  if (!pesel) return;
  const phone = $("cb-phone").value.trim();
  if (!/^\+48 ?\d{3} ?\d{3} ?\d{3}$/.test(phone)) {
    $("cb-phone").setAttribute("aria-invalid", "true");
    announce(() => t("agent.phone_invalid"), "error");
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
    announce(() => t("agent.callback_added"));
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
    announce(() => t("agent.callback_closed"));
    $("callbacks").focus();
  });
}
