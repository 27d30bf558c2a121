// The patient's page (demo): my visits (move or cancel either dose), and booking in three
// steps: search (only the vaccines I may have, nearest points, part of the day, a day view)
// → review (both doses, the place, what to bring) → confirmation (reference, .ics, the SMS).
import {
  ApiError,
  addDays,
  announce,
  api,
  claims,
  dayOf,
  doseText,
  dosesText,
  el,
  errorText,
  formatDateTime,
  formatDay,
  initPage,
  labelCells,
  onLanguageChange,
  openDialog,
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
import { confirmationContent, planSecondDose, reviewContent } from "./booking.js";
import { fillPartsOfDay, normalisePostcode, renderResults, takeSeat } from "./slots.js";
import { QueuePanel, birthYearOfPesel, governs, listOpenings, sessionTicketStore } from "./queue.js";

const $ = (id) => document.getElementById(id);
const MAX_RANGE_DAYS = 60;

const state = {
  mine: [],
  eligible: null, // GET /v1/me/eligible-products
  product: null, // the chosen product code
  lastSearch: null, // {query, result, cursor}
  coords: null, // {lat, lon} from the browser, when the patient allowed it
  moving: null, // the appointment being moved
  cancelling: null,
  review: null, // {slot, point, info, second, candidates}
  done: null, // {appointments, confirmation, heading}
  openings: null, // GET /v1/openings: cohort openings announced or under way
};

// The waiting room of an opening that governs my booking (web/queue.js); its ticket is kept
// in this tab's sessionStorage, so a reload keeps the place.
let queue = null;

// A search started before the vaccines are known (a quick click) waits for them.
let eligibleLoaded = Promise.resolve();

const sess = initPage({ roles: ["patient"], audience: "me" });
if (sess) start();

function start() {
  queue = new QueuePanel($("panels"), {
    audience: "me",
    store: sessionTicketStore(sess.uid),
    onChange: updateConfirm,
  });
  fillPartsOfDay($("search-part"));
  $("search-from").value = todayWarsaw();
  $("search-to").value = addDays(todayWarsaw(), 30);
  $("search-form").addEventListener("submit", search);
  $("more-results").addEventListener("click", moreResults);
  $("use-location").addEventListener("click", useLocation);
  $("search-postcode").addEventListener("input", () => {
    state.coords = null;
    $("location-msg").textContent = "";
  });
  $("search-part").addEventListener("change", () => state.lastSearch && showResults(state.lastSearch.result, false));
  $("cancel-form").addEventListener("submit", cancel);
  $("move-stop").addEventListener("click", () => setMoving(null));
  $("review-back").addEventListener("click", () => setStep("search", $("results")));
  $("review-confirm").addEventListener("click", confirm);
  $("confirmation-done").addEventListener("click", () => {
    setStep("search");
    $("mine").focus();
  });
  if (!("geolocation" in navigator)) $("use-location").hidden = true;
  onLanguageChange(() => {
    fillPartsOfDay($("search-part"));
    renderMine();
    renderEligibility();
    renderMoving();
    if (state.lastSearch) showResults(state.lastSearch.result, false);
    if (state.review) renderReview();
    if (state.done) renderDone();
  });
  loadMine();
  eligibleLoaded = loadEligible();
  loadOpenings();
}

// -- steps ----------------------------------------------------------------------------------
function setStep(step, focus) {
  $("search").hidden = step !== "search";
  $("review").hidden = step !== "review";
  $("confirmation").hidden = step !== "done";
  const section = { search: $("search"), review: $("review"), done: $("confirmation") }[step];
  const steps = document.querySelector(".steps");
  section.querySelector("h2").after(steps);
  steps.querySelectorAll("li").forEach((li, i) => {
    if (i === ["search", "review", "done"].indexOf(step)) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  });
  if (step !== "review") state.review = null;
  if (step !== "done") state.done = null;
  if (focus) focus.focus();
}

// -- my visits ------------------------------------------------------------------------------
async function loadMine() {
  await run(null, async () => {
    const data = await api("GET", "/v1/me/appointments");
    state.mine = data.appointments;
    renderMine();
  });
}

function isActive(a) {
  return a.status === "booked" && new Date(a.starts_at) > new Date();
}

function linkedOf(a) {
  return a.linked_appointment_id ? state.mine.find((b) => b.appointment_id === a.linked_appointment_id) : null;
}

function renderMine() {
  const table = $("mine-table");
  table.querySelector("tbody").replaceChildren(
    ...(state.mine.length
      ? state.mine.map((a) => {
          const label = `${formatDateTime(a.starts_at)}, ${productName(a.product)}, ${doseText(a)}`;
          return el(
            "tr",
            { "data-appointment": a.appointment_id, class: `status-${a.status}` },
            el("td", { text: formatDateTime(a.starts_at) }),
            el("td", {}, placeBlock(a.point, a.point_id, { directions: true })),
            el("td", { text: productName(a.product) }),
            el("td", { text: doseText(a) }),
            el("td", { text: statusText(a.status) }),
            el(
              "td",
              { class: "actions" },
              isActive(a)
                ? [
                    el("button", {
                      type: "button",
                      text: t("patient.move"),
                      "aria-label": `${t("patient.move")}: ${label}`,
                      onclick: () => setMoving(a),
                    }),
                    el("button", {
                      type: "button",
                      class: "danger",
                      text: t("agent.cancel"),
                      "aria-label": `${t("agent.cancel")}: ${label}`,
                      onclick: () => openCancel(a),
                    }),
                  ]
                : "—",
            ),
          );
        })
      : [el("tr", {}, el("td", { colspan: "6", text: t("patient.none") }))]),
  );
  labelCells(table);
}

// -- which vaccines -------------------------------------------------------------------------
async function loadEligible() {
  await run(null, async () => {
    state.eligible = await api("GET", "/v1/me/eligible-products", { query: { date: todayWarsaw() } });
    rememberProducts([...state.eligible.products, ...state.eligible.not_eligible]);
    const codes = state.eligible.products.map((p) => p.product);
    if (!codes.includes(state.product)) state.product = codes.includes("comirnaty") ? "comirnaty" : codes[0] || null;
    renderEligibility();
    renderMine();
    syncQueue();
  });
}

// -- the waiting room of an opening -------------------------------------------------------------
/** My birth year, from the identity the page signed in with (read for display only). */
function myBirthYear() {
  return birthYearOfPesel(claims((sess && sess.token) || "").pesel);
}

async function loadOpenings() {
  try {
    state.openings = await listOpenings();
  } catch {
    state.openings = []; // the refusal of a booking still shows the room (queue.refused)
  }
  syncQueue();
}

/** Show the room of the opening that governs me, unless I have my visit booked already. */
function syncQueue() {
  if (!queue || state.openings === null || state.eligible === null) return;
  const booked = state.eligible.products.some((p) => p.booked_appointment_id);
  const year = myBirthYear();
  const opening = booked ? null : state.openings.find((o) => governs(o, year));
  if (opening) queue.show(opening);
  else if (queue.opening && (booked || !state.openings.some((o) => o.opening_id === queue.opening.opening_id))) queue.hide();
}

function eligibleInfo(code) {
  return state.eligible && state.eligible.products.find((p) => p.product === code);
}

function whyNot() {
  const first = state.eligible && state.eligible.not_eligible[0];
  if (!first) return t("patient.nothing_eligible");
  // errorText() explains a refusal; eligible-products lists them before any booking.
  return errorText(new ApiError(403, first.code, first.message, first.details || {}));
}

function renderEligibility() {
  const box = $("eligibility");
  const form = $("search-form");
  if (state.moving) {
    box.replaceChildren(
      el("p", {}, `${t("common.product")}: `, el("strong", { text: productName(state.moving.product) }), ` — ${t("patient.move_same_product")}`),
    );
    form.hidden = false;
    return;
  }
  if (!state.eligible) {
    box.replaceChildren(el("p", { class: "muted", text: t("common.loading") }));
    return;
  }
  const products = state.eligible.products;
  const booked = products.find((p) => p.booked_appointment_id);
  if (booked) {
    box.replaceChildren(el("p", { class: "notice-text", text: t("patient.already_booked") }));
    form.hidden = true;
    $("results").replaceChildren();
    $("more-results").hidden = true;
    return;
  }
  if (!products.length) {
    box.replaceChildren(el("p", { class: "notice-text", text: whyNot() }));
    form.hidden = true;
    return;
  }
  form.hidden = false;
  box.replaceChildren(
    el(
      "fieldset",
      { class: "products" },
      el("legend", { text: t("patient.choose_product") }),
      products.map((p) => {
        const id = `product-${p.product}`;
        return el(
          "div",
          { class: "radio" },
          el("input", {
            type: "radio",
            name: "product",
            id,
            value: p.product,
            checked: p.product === state.product,
            "aria-describedby": `${id}-hint`,
            onchange: () => {
              state.product = p.product;
              state.lastSearch = null;
              $("results").replaceChildren();
              $("more-results").hidden = true;
            },
          }),
          el("label", { for: id }, el("strong", { text: productName(p.product) }), ` (${p.manufacturer})`),
          el("p", { id: `${id}-hint`, class: "hint", text: dosesText(p) }),
        );
      }),
      el("p", { class: "hint", text: t("patient.only_eligible", { n: state.eligible.not_eligible.length }) }),
    ),
  );
}

// -- moving ---------------------------------------------------------------------------------
function setMoving(appointment) {
  state.moving = appointment;
  state.lastSearch = null;
  $("results").replaceChildren();
  $("more-results").hidden = true;
  setStep("search");
  renderMoving();
  renderEligibility();
  if (appointment) {
    const [from, to] = moveRange(appointment);
    $("search-from").value = from;
    $("search-to").value = to;
    $("search-postcode").focus();
  }
}

/** The days a dose may move to: dose 2 stays in its window after dose 1. */
function moveRange(a) {
  const today = todayWarsaw();
  const info = productInfo(a.product);
  const other = linkedOf(a);
  if (a.dose_number === 2 && other && info && info.doses === 2) {
    const first = dayOf(other.starts_at);
    const from = [today, addDays(first, info.min_interval_days)].sort().pop();
    const to = addDays(first, info.max_interval_days);
    return [from, [to, addDays(from, MAX_RANGE_DAYS)].sort()[0]];
  }
  const eligible = eligibleInfo(a.product);
  const end = eligible && eligible.date_to ? eligible.date_to : addDays(today, 30);
  return [today, [end, addDays(today, MAX_RANGE_DAYS)].sort()[0]];
}

function renderMoving() {
  $("move-banner").hidden = !state.moving;
  if (state.moving) {
    const a = state.moving;
    $("move-text").textContent = t("patient.moving", {
      when: formatDateTime(a.starts_at),
      dose: doseText(a),
      product: productName(a.product),
    });
  }
}

// -- search ---------------------------------------------------------------------------------
function useLocation(e) {
  const button = e.currentTarget;
  $("location-msg").textContent = t("patient.locating");
  button.disabled = true;
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      button.disabled = false;
      state.coords = {
        lat: Math.round(pos.coords.latitude * 1000) / 1000,
        lon: Math.round(pos.coords.longitude * 1000) / 1000,
      };
      $("search-postcode").value = "";
      $("location-msg").textContent = t("patient.located");
      search();
    },
    (err) => {
      button.disabled = false;
      state.coords = null;
      $("location-msg").textContent = t("patient.location_failed", { reason: err.message });
      $("search-postcode").focus();
    },
    { enableHighAccuracy: false, timeout: 10000, maximumAge: 600000 },
  );
}

function searchQuery() {
  const product = state.moving ? state.moving.product : state.product;
  const info = state.moving ? null : eligibleInfo(product);
  let from = $("search-from").value || todayWarsaw();
  let to = $("search-to").value || addDays(from, 30);
  if (info && info.date_from > from) from = info.date_from;
  if (info && info.date_to && info.date_to < to) to = info.date_to;
  const base = {
    product,
    date_from: from,
    date_to: to,
    accessible: $("search-accessible").checked ? "true" : undefined,
    limit: 5,
  };
  if (state.coords) return { ...base, lat: state.coords.lat, lon: state.coords.lon };
  const postcode = normalisePostcode($("search-postcode").value);
  return postcode ? { ...base, postcode } : null;
}

async function search(e) {
  if (e) e.preventDefault();
  await eligibleLoaded;
  const query = searchQuery();
  if (!query) {
    $("search-postcode").setAttribute("aria-invalid", "true");
    announce(() => t("search.postcode_invalid"), "error");
    $("search-postcode").focus();
    return;
  }
  if (!query.product) {
    renderEligibility(); // says why nothing can be booked
    return;
  }
  $("search-postcode").removeAttribute("aria-invalid");
  await run(e && e.submitter, async () => {
    const result = await api("GET", "/v1/slots", { query, headers: queue.headers() });
    state.lastSearch = { query, result, cursor: result.next_cursor };
    showResults(result, false);
    announce(() => t("search.found", { n: result.items.length }));
  });
}

async function moreResults(e) {
  const last = state.lastSearch;
  if (!last || !last.cursor) return;
  await run(e.currentTarget, async () => {
    const result = await api("GET", "/v1/slots", {
      query: { ...last.query, cursor: last.cursor },
      headers: queue.headers(),
    });
    last.cursor = result.next_cursor;
    last.result = { ...last.result, items: [...last.result.items, ...result.items] };
    showResults(result, true);
  });
}

function showResults(result, append) {
  renderResults($("results"), result, {
    append,
    query: state.lastSearch.query,
    part: $("search-part").value,
    // The visit's own slot is not offered as a move.
    verb: Object.assign(
      (slot) =>
        state.moving ? (slot.slot_id === state.moving.slot_id ? null : t("patient.move_here")) : t("patient.choose"),
      { note: () => t("search.current_slot") },
    ),
    onPick: review,
  });
  $("more-results").hidden = !(state.lastSearch && state.lastSearch.cursor);
}

// -- review and confirm -----------------------------------------------------------------------
async function review(slot, button, point) {
  const info = state.moving ? productInfo(slot.product) : eligibleInfo(slot.product);
  await run(button, async () => {
    let second = null;
    let candidates = [];
    if (!state.moving && info && info.doses === 2 && info.books_second_dose) {
      ({ choice: second, candidates } = await planSecondDose(point, slot, info));
    }
    state.review = { slot, point, info, second, candidates };
    renderReview();
    setStep("review", $("review"));
  });
}

function moveEffect(a, slot, point, info) {
  const other = linkedOf(a);
  if (!other || other.status !== "booked" || !info || info.doses !== 2) return "";
  if (a.dose_number === 2) return t("move.dose1_stays");
  const day = dayOf(slot.starts_at);
  const d2 = dayOf(other.starts_at);
  const keeps =
    other.point_id === point.point_id &&
    d2 >= addDays(day, info.min_interval_days) &&
    d2 <= addDays(day, info.max_interval_days);
  return keeps
    ? t("move.dose2_stays", { when: formatDateTime(other.starts_at) })
    : t("move.dose2_moves", { planned: info.planned_interval_days });
}

function renderReview() {
  const r = state.review;
  if (!r) return;
  const moving = state.moving ? { ...state.moving } : null;
  const body = reviewContent({
    first: r.slot,
    second: r.second,
    candidates: r.candidates,
    point: r.point,
    info: r.info,
    moving,
    onSecond: (slot) => {
      r.second = slot;
      $("review-body").querySelector(".review-dose2").textContent = formatDateTime(slot.starts_at);
    },
  });
  if (moving) body.splice(1, 0, el("p", { class: "effect", text: moveEffect(state.moving, r.slot, r.point, r.info) }));
  $("review-heading").textContent = moving ? t("review.heading_move") : t("review.heading");
  $("review-body").replaceChildren(...body.filter(Boolean));
  $("review-confirm").textContent = moving ? t("review.confirm_move") : t("review.confirm");
  updateConfirm();
}

/** Confirm is possible with a dose 2 chosen and, while an opening's queue governs, on my turn. */
function updateConfirm() {
  const r = state.review;
  const button = $("review-confirm");
  let note = $("review-queue-note");
  if (!r) return;
  const moving = Boolean(state.moving);
  const noSecond = !moving && r.info && r.info.doses === 2 && r.info.books_second_dose && !r.second;
  const waiting = !moving && queue && queue.blocks(r.slot.product, r.point);
  button.disabled = Boolean(noSecond || waiting);
  if (waiting) {
    if (!note) {
      note = el("p", { id: "review-queue-note", class: "notice-text" });
      button.closest(".form-actions").before(note);
    }
    note.textContent = t("queue.review_wait");
    button.setAttribute("aria-describedby", "review-queue-note");
  } else {
    if (note) note.remove();
    button.removeAttribute("aria-describedby");
  }
}

async function confirm(e) {
  const r = state.review;
  if (!r) return;
  await run(e.currentTarget, async () => {
    let result;
    try {
      if (state.moving) {
        result = await api("POST", `/v1/appointments/${encodeURIComponent(state.moving.appointment_id)}/reschedule`, {
          body: { slot_id: r.slot.slot_id },
          action: "reschedule",
        });
      } else {
        const body = { slot_id: r.slot.slot_id };
        if (r.second) body.second_slot_id = r.second.slot_id;
        result = await api("POST", "/v1/appointments", { body, action: "book", headers: queue.headers() });
      }
    } catch (err) {
      // An opening governs this booking: its waiting room says where I stand (and the error why).
      if (await queue.refused(err)) updateConfirm();
      if (err.code === "slot_unavailable" && state.lastSearch) {
        // The slot went meanwhile: back to fresh results, and say so.
        setStep("search");
        await search();
        showError(err);
        $("results").focus();
        return;
      }
      throw err;
    }
    const moved = Boolean(state.moving);
    takeSeat(state.lastSearch && state.lastSearch.result, result.appointments.map((a) => a.slot_id));
    state.moving = null;
    renderMoving();
    state.lastSearch = null;
    $("results").replaceChildren();
    $("more-results").hidden = true;
    setStep("done");
    state.done = {
      appointments: result.appointments,
      confirmation: result.confirmation,
      heading: moved ? "confirm.moved" : "confirm.booked",
    };
    renderDone();
    $("confirmation").focus();
    announce(() => t(moved ? "patient.moved_status" : "patient.booked_status"));
    await Promise.all([loadMine(), loadEligible()]);
  });
}

function renderDone() {
  const d = state.done;
  if (!d) return;
  $("confirmation-heading").textContent = t(d.heading === "confirm.moved" ? "confirm.heading_moved" : "confirm.heading");
  $("confirmation-body").replaceChildren(...confirmationContent(d.appointments, d.confirmation, { heading: d.heading }).filter(Boolean));
}

// -- cancel ---------------------------------------------------------------------------------
function cancelEffect(a) {
  const other = linkedOf(a);
  if (a.dose_number === 1 && other && other.status === "booked") {
    return t("cancel.effect_both", { when: formatDateTime(other.starts_at) });
  }
  if (a.dose_number === 2) return t("cancel.effect_dose2");
  const info = productInfo(a.product);
  if (info && info.doses === 2) return t("cancel.effect_series");
  return t("cancel.effect_single");
}

function openCancel(a) {
  state.cancelling = a;
  $("cancel-visit").textContent = `${formatDateTime(a.starts_at)} · ${placeText(a.point, a.point_id)} · ${productName(
    a.product,
  )} · ${doseText(a)}`;
  $("cancel-effect").textContent = cancelEffect(a);
  // The safe choice has the focus: Enter does not cancel a visit by accident.
  openDialog($("cancel-dialog"), $("cancel-back"));
}

async function cancel(e) {
  e.preventDefault();
  const a = state.cancelling;
  await run(e.submitter, async () => {
    const result = await api("POST", `/v1/appointments/${encodeURIComponent(a.appointment_id)}/cancel`, {
      body: {},
      action: "cancel",
    });
    $("cancel-dialog").close();
    if (state.moving && state.moving.appointment_id === a.appointment_id) setMoving(null);
    await Promise.all([loadMine(), loadEligible()]);
    const n = result.appointments.length;
    announce(() => t(n > 1 ? "patient.cancelled_both" : "patient.cancelled_one", { when: formatDay(dayOf(a.starts_at)) }));
    $("mine").focus();
  });
}
