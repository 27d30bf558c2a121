// The point staff's app: calendar (week and day), publishing, slot changes, the day's visits.
// The point's name and address head the page; every product list is the point's own; a
// visit is completed after its check-in (or with an audited override and its reason).
import {
  addDays,
  addressText,
  announce,
  api,
  checkPeselInput,
  claims,
  dayOf,
  doseText,
  el,
  fillProducts,
  formatDay,
  formatDateTime,
  formatTime,
  initPage,
  labelCells,
  onLanguageChange,
  openDialog,
  patientText,
  productName,
  run,
  statusText,
  t,
  todayWarsaw,
} from "./app.js";

const PRODUCT_SELECTS = ["pub-product", "add-product", "walkin-product", "complete-product"];

const $ = (id) => document.getElementById(id);

const state = {
  pointId: null,
  point: null, // GET /v1/points/{id}: name, address, products
  override: false, // the complete dialog records a dose without a check-in
  weekStart: todayWarsaw(),
  day: todayWarsaw(),
  slots: [], // the shown week's slots (StaffSlot)
  visitsDate: todayWarsaw(),
  visits: null,
  current: null, // the visit or slot a dialog is about
};

const s = initPage({ roles: ["staff", "admin"] });
if (s) start(s);

function start(sess) {
  const tokenClaims = claims(sess.token);
  if (sess.role === "staff") {
    state.pointId = tokenClaims.point_id || null;
  } else {
    $("point-form").hidden = false;
    $("point-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.pointId = $("point-id").value.trim();
      state.point = null;
      renderPoint();
      loadPoint();
      loadCalendar();
      loadVisits();
    });
  }
  renderPoint();
  buildWeekdayBoxes();
  $("week-start").value = state.weekStart;
  $("visits-date").value = state.visitsDate;
  $("pub-from").value = state.day;
  $("pub-to").value = state.day;
  $("add-day").value = addDays(state.day, 1);

  $("week-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.weekStart = $("week-start").value || todayWarsaw();
    state.day = state.weekStart;
    loadCalendar(e.submitter);
  });
  $("week-prev").addEventListener("click", (e) => shiftWeek(-7, e.currentTarget));
  $("week-next").addEventListener("click", (e) => shiftWeek(7, e.currentTarget));
  $("publish-form").addEventListener("submit", publish);
  $("add-slot-form").addEventListener("submit", addSlot);
  $("visits-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.visitsDate = $("visits-date").value || todayWarsaw();
    loadVisits(e.submitter);
  });
  $("walkin-form").addEventListener("submit", walkIn);
  $("checkin-form").addEventListener("submit", checkIn);
  // The typed PESEL does not stay in the page once the dialog is closed.
  $("checkin-dialog").addEventListener("close", () => {
    $("checkin-pesel").value = "";
  });
  $("override-open").addEventListener("click", () => {
    const visit = state.current;
    $("checkin-dialog").close();
    openVisitDialog("complete", visit, { override: true });
  });
  $("complete-form").addEventListener("submit", complete);
  $("noshow-form").addEventListener("submit", noShow);
  $("capacity-form").addEventListener("submit", changeCapacity);
  for (const id of ["walkin-lot", "complete-lot"]) {
    $(id).addEventListener("input", (e) => {
      const input = e.target;
      const pos = input.selectionStart;
      input.value = input.value.toUpperCase();
      input.setSelectionRange(pos, pos);
    });
  }
  onLanguageChange(() => {
    buildWeekdayBoxes();
    renderPoint();
    renderWeek();
    renderDay();
    renderVisits();
    setCompleteTitle();
  });
  if (state.pointId) {
    loadPoint();
    loadCalendar();
    loadVisits();
  }
}

async function loadPoint() {
  if (!state.pointId) return;
  await run(null, async () => {
    state.point = (await api("GET", pointPath())).point;
    renderPoint();
  });
}

/** The point's name and address head the page; its products fill every product list. */
function renderPoint() {
  const p = state.point;
  $("point-heading").textContent = p ? t("staff.point_heading", { name: p.name }) : t("staff.point_loading");
  $("point-address").textContent = p
    ? [addressText(p), p.point_id, t("staff.point_products", { list: p.products.map(productName).join(", ") })].join(" · ")
    : state.pointId || "";
  const products = p ? p.products : [];
  for (const id of PRODUCT_SELECTS) fillProducts($(id), products);
  document.title = p ? `${p.name} — ${t("staff.title")}` : t("staff.title");
}

function pointPath(suffix = "") {
  return `/v1/points/${encodeURIComponent(state.pointId)}${suffix}`;
}

// -- calendar -----------------------------------------------------------------------------------
function shiftWeek(days, button) {
  state.weekStart = addDays(state.weekStart, days);
  state.day = state.weekStart;
  $("week-start").value = state.weekStart;
  loadCalendar(button);
}

async function loadCalendar(button) {
  if (!state.pointId) return;
  const weekEnd = addDays(state.weekStart, 6);
  await run(button, async () => {
    const data = await api("GET", pointPath("/calendar"), {
      query: { date_from: state.weekStart, date_to: weekEnd },
    });
    state.slots = data.slots;
    renderWeek();
    renderDay();
  });
}

function weekDays() {
  return Array.from({ length: 7 }, (_, i) => addDays(state.weekStart, i));
}

function renderWeek() {
  const tbody = $("week-table").querySelector("tbody");
  $("week-caption").textContent = t("staff.week_caption", {
    from: formatDay(state.weekStart),
    to: formatDay(addDays(state.weekStart, 6)),
  });
  tbody.replaceChildren(
    ...weekDays().map((day) => {
      const slots = state.slots.filter((x) => dayOf(x.starts_at) === day);
      const sum = (f) => slots.reduce((acc, x) => acc + x[f], 0);
      const selected = day === state.day;
      return el(
        "tr",
        { class: selected ? "selected" : "" },
        el(
          "th",
          { scope: "row" },
          el("button", {
            type: "button",
            class: "link-button",
            "aria-current": selected ? "date" : false,
            "data-day": day,
            text: formatDay(day),
            onclick: () => selectDay(day),
          }),
        ),
        el("td", { class: "num", text: slots.length }),
        el("td", { class: "num", text: sum("capacity") }),
        el("td", { class: "num", text: sum("booked") }),
        el("td", { class: "num", text: sum("free") }),
        el("td", { class: "num", text: slots.filter((x) => x.blocked).length }),
      );
    }),
  );
  labelCells($("week-table"));
}

function selectDay(day) {
  state.day = day;
  $("pub-from").value = day;
  $("pub-to").value = day;
  renderWeek();
  renderDay();
  $("day-heading").focus();
}

function slotLabel(slot) {
  return `${formatTime(slot.starts_at)} ${productName(slot.product)}`;
}

function renderDay() {
  const slots = state.slots.filter((x) => dayOf(x.starts_at) === state.day);
  $("day-heading").textContent = t("staff.day_heading", { day: formatDay(state.day) });
  $("day-caption").textContent = t("staff.day_heading", { day: formatDay(state.day) });
  $("day-empty").hidden = slots.length > 0;
  $("day-table").hidden = slots.length === 0;
  $("day-table")
    .querySelector("tbody")
    .replaceChildren(
      ...slots.map((slot) => {
        const label = slotLabel(slot);
        const stateText = slot.blocked
          ? t("staff.state_blocked", { cap: slot.blocked_capacity ?? 0 })
          : slot.free === 0
            ? t("staff.state_full")
            : t("staff.state_open");
        return el(
          "tr",
          { "data-slot": slot.slot_id, class: slot.blocked ? "blocked" : "" },
          el("td", { text: formatTime(slot.starts_at) }),
          el("td", { text: productName(slot.product) }),
          el("td", { class: "num", text: slot.capacity }),
          el("td", { class: "num", text: slot.booked }),
          el("td", { class: "num", text: slot.free }),
          el("td", { text: stateText }),
          el(
            "td",
            { class: "actions" },
            el("button", {
              type: "button",
              text: t("staff.change_capacity"),
              "aria-label": `${t("staff.change_capacity")} ${label}`,
              onclick: () => openCapacity(slot),
            }),
            el("button", {
              type: "button",
              text: slot.blocked ? t("staff.unblock") : t("staff.block"),
              "aria-label": `${slot.blocked ? t("staff.unblock") : t("staff.block")} ${label}`,
              onclick: (e) => changeSlot(slot, { blocked: !slot.blocked }, e.currentTarget),
            }),
            el("button", {
              type: "button",
              class: "danger",
              text: t("staff.remove"),
              "aria-label": `${t("staff.remove")} ${label}`,
              onclick: () => removeSlot(slot),
            }),
          ),
        );
      }),
    );
  labelCells($("day-table"));
}

function openCapacity(slot) {
  state.current = slot;
  $("capacity-slot").textContent = `${formatDay(state.day)} ${slotLabel(slot)} — ${t(
    "staff.booked_now",
    { n: slot.booked },
  )}`;
  $("capacity-value").value = slot.blocked ? slot.blocked_capacity ?? 0 : slot.capacity;
  openDialog($("capacity-dialog"));
}

async function changeCapacity(e) {
  e.preventDefault();
  const capacity = Number($("capacity-value").value);
  const slot = state.current;
  const ok = await changeSlot(slot, { capacity }, e.submitter);
  if (ok) {
    $("capacity-dialog").close();
    focusSlot(slot.slot_id, 0);
  }
}

async function changeSlot(slot, body, button) {
  let done = false;
  await run(button, async () => {
    const result = await api("PATCH", pointPath(`/slots/${encodeURIComponent(slot.slot_id)}`), {
      body,
      action: "change-slot",
    });
    done = true;
    showDisplaced(result.displaced);
    await loadCalendar();
    focusSlot(slot.slot_id, body.blocked === undefined ? 0 : 1);
    announce(() =>
      t("staff.slot_changed", {
        slot: slotLabel(result.slot),
        cap: result.slot.capacity,
        n: result.displaced.length,
      }),
    );
    if (result.displaced.length) loadVisits();
  });
  return done;
}

function focusSlot(slotId, buttonIndex) {
  const row = document.querySelector(`#day-table tr[data-slot="${CSS.escape(slotId)}"]`);
  const button = row && row.querySelectorAll("button")[buttonIndex];
  if (button) button.focus();
}

async function removeSlot(slot) {
  const confirmed = await confirmDialog(
    t("staff.remove_confirm", {
      slot: `${formatDay(state.day)} ${slotLabel(slot)}`,
      n: slot.booked,
    }),
  );
  if (!confirmed) return;
  await run(null, async () => {
    const result = await api("DELETE", pointPath(`/slots/${encodeURIComponent(slot.slot_id)}`), {
      action: "remove-slot",
    });
    showDisplaced(result.displaced);
    await loadCalendar();
    $(result.displaced.length ? "displaced" : "day-heading").focus();
    announce(() => t("staff.slot_removed", { slot: slotLabel(slot), n: result.displaced.length }));
  });
}

function confirmDialog(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    // A removal cancels visits: the safe answer has the focus.
    openDialog(dialog, $("confirm-no"));
  });
}

function showDisplaced(displaced) {
  const section = $("displaced");
  if (!displaced.length) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  section
    .querySelector("tbody")
    .replaceChildren(
      ...displaced.map((v) =>
        el(
          "tr",
          {},
          el("td", { text: formatDateTime(v.starts_at) }),
          el("td", { class: "num", text: v.dose_number }),
          el("td", { text: patientText(v.patient) }),
          el("td", { class: "mono", text: v.appointment_id }),
        ),
      ),
    );
  labelCells($("displaced-table"));
}

// -- publishing and adding -----------------------------------------------------------------------
function buildWeekdayBoxes() {
  const box = $("weekday-boxes");
  const checked = new Set(
    [...box.querySelectorAll("input:checked")].map((i) => Number(i.value)),
  );
  const first = box.children.length === 0;
  box.replaceChildren(
    ...Array.from({ length: 7 }, (_, d) =>
      el(
        "span",
        { class: "checkbox" },
        el("input", {
          type: "checkbox",
          id: `wd-${d}`,
          name: "weekdays",
          value: String(d),
          checked: first ? true : checked.has(d),
        }),
        el("label", { for: `wd-${d}`, text: t(`weekday.${d}`) }),
      ),
    ),
  );
}

async function publish(e) {
  e.preventDefault();
  const form = e.target;
  const weekdays = [...form.querySelectorAll("input[name=weekdays]:checked")].map((i) =>
    Number(i.value),
  );
  if (!weekdays.length) {
    announce(() => t("staff.weekdays_needed"), "error");
    return;
  }
  const body = {
    date_from: $("pub-from").value,
    date_to: $("pub-to").value,
    weekdays,
    opens: $("pub-opens").value,
    closes: $("pub-closes").value,
    slot_minutes: Number($("pub-minutes").value),
    capacity: Number($("pub-capacity").value),
    product: $("pub-product").value,
  };
  await run(e.submitter, async () => {
    const result = await api("POST", pointPath("/calendar/publish"), { body, action: "publish" });
    // Show the week that starts with the first published day.
    state.weekStart = body.date_from;
    state.day = body.date_from;
    $("week-start").value = state.weekStart;
    await loadCalendar();
    announce(() => t("staff.published", { added: result.added, kept: result.kept }));
  });
}

async function addSlot(e) {
  e.preventDefault();
  const body = {
    day: $("add-day").value,
    start: $("add-start").value,
    product: $("add-product").value,
    capacity: Number($("add-capacity").value),
  };
  await run(e.submitter, async () => {
    const result = await api("POST", pointPath("/slots"), { body, action: "add-slot" });
    state.day = body.day;
    if (body.day < state.weekStart || body.day > addDays(state.weekStart, 6)) {
      state.weekStart = body.day;
      $("week-start").value = body.day;
    }
    await loadCalendar();
    announce(() => t("staff.slot_added", { slot: `${formatDay(body.day)} ${slotLabel(result.slot)}` }));
  });
}

// -- the day's visits ---------------------------------------------------------------------------
async function loadVisits(button) {
  if (!state.pointId) return;
  await run(button, async () => {
    state.visits = await api("GET", pointPath("/visits"), { query: { date: state.visitsDate } });
    renderVisits();
  });
}

function visitLabel(v) {
  return `${formatTime(v.starts_at)} ${productName(v.product)} ${v.patient.masked_pesel || ""}`.trim();
}

function visitStatus(v) {
  if (v.status === "booked" && v.checked_in_at) {
    return t("staff.checked_in_at", { time: formatTime(v.checked_in_at) });
  }
  if (v.status === "completed" && v.check_in_override_reason) return t("staff.completed_no_id");
  return statusText(v.status);
}

function renderVisits() {
  const data = state.visits;
  if (!data) return;
  $("visits-caption").textContent = t("staff.visits_caption", {
    day: formatDay(data.date),
    n: data.visits.length,
  });
  $("visits-empty").hidden = data.visits.length > 0;
  $("visits-table")
    .querySelector("tbody")
    .replaceChildren(
      ...data.visits.map((v) => {
        const label = visitLabel(v);
        const actions = [];
        // Check-in first (the PESEL from the ID), then completion; a no-show before that.
        if (v.status === "booked" && !v.checked_in_at) {
          actions.push(
            el("button", {
              type: "button",
              class: "primary",
              text: t("staff.checkin"),
              "aria-label": `${t("staff.checkin")}: ${label}`,
              onclick: () => openVisitDialog("checkin", v),
            }),
            el("button", {
              type: "button",
              text: t("staff.noshow"),
              "aria-label": `${t("staff.noshow")}: ${label}`,
              onclick: () => openVisitDialog("noshow", v),
            }),
          );
        } else if (v.status === "booked") {
          actions.push(
            el("button", {
              type: "button",
              class: "primary",
              text: t("staff.complete"),
              "aria-label": `${t("staff.complete")}: ${label}`,
              onclick: () => openVisitDialog("complete", v),
            }),
          );
        }
        return el(
          "tr",
          { "data-appointment": v.appointment_id, class: `status-${v.status}` },
          el("td", { text: formatTime(v.starts_at) }),
          el("td", { text: productName(v.product) }),
          el("td", { class: "nowrap", text: t(`dose.${v.dose_kind}`, { n: v.dose_number }) }),
          el("td", { text: patientText(v.patient) }),
          el("td", { class: "visit-status", text: visitStatus(v) }),
          el("td", { class: "actions" }, actions.length ? actions : "—"),
        );
      }),
    );
  $("walkins-table")
    .querySelector("tbody")
    .replaceChildren(
      ...(data.walk_ins.length
        ? data.walk_ins.map((w) =>
            el(
              "tr",
              {},
              el("td", { text: productName(w.product) }),
              el("td", { class: "num", text: w.dose_number }),
              el("td", { class: "mono", text: w.lot_number }),
              el("td", { text: w.leftover_dose ? t("common.yes") : t("common.no") }),
              el("td", { text: patientText(w.patient) }),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "5", text: t("staff.walkins_empty") }))]),
    );
  labelCells($("visits-table"));
  labelCells($("walkins-table"));
}

function setCompleteTitle() {
  const key = state.override ? "staff.complete_override_title" : "staff.complete_title";
  $("complete-title").dataset.i18n = key;
  $("complete-title").textContent = t(key);
}

function openVisitDialog(kind, visit, { override = false } = {}) {
  state.current = visit;
  const text = `${formatDateTime(visit.starts_at)} · ${productName(visit.product)} · ${doseText(
    visit,
  )} · ${patientText(visit.patient)}`;
  $(`${kind}-visit`).textContent = text;
  if (kind === "checkin") {
    $("checkin-pesel").value = "";
    $("checkin-pesel").removeAttribute("aria-invalid");
    $("checkin-pesel-msg").textContent = "";
    $("checkin-dialog").querySelector("details.override").open = false;
  } else if (kind === "complete") {
    state.override = override;
    setCompleteTitle();
    $("override-fields").hidden = !override;
    $("complete-override").value = "";
    $("complete-product").value = visit.product;
    $("complete-lot").value = "";
  } else {
    $("noshow-note").value = "";
    $("noshow-effect").textContent =
      visit.dose_number === 1 && visit.linked_appointment_id
        ? t("staff.noshow_effect_linked")
        : t("staff.noshow_effect_other");
  }
  openDialog($(`${kind}-dialog`));
}

async function visitAction(e, kind, path, body, message) {
  const visit = state.current;
  await run(e.submitter, async () => {
    const result = await api("POST", `/v1/appointments/${encodeURIComponent(visit.appointment_id)}/${path}`, {
      body,
      action: path,
    });
    $(`${kind}-dialog`).close();
    // The day's list and the calendar's counts both change with a visit.
    await Promise.all([loadVisits(), loadCalendar()]);
    announce(() => message(result.appointment));
    focusVisit(visit.appointment_id);
  });
}

function focusVisit(appointmentId) {
  const row = document.querySelector(`#visits-table tr[data-appointment="${CSS.escape(appointmentId)}"]`);
  if (!row) return;
  const target = row.querySelector("button") || row.querySelector(".visit-status");
  if (target && !target.matches("button")) target.setAttribute("tabindex", "-1");
  if (target) target.focus();
}

async function checkIn(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("checkin-pesel"), $("checkin-pesel-msg"));
  if (!pesel) return;
  const visit = state.current;
  await visitAction(e, "checkin", "check-in", { pesel }, () => t("staff.checked_in", { visit: visitLabel(visit) }));
}

async function complete(e) {
  e.preventDefault();
  const lot = $("complete-lot").value.trim().toUpperCase();
  if (!/^[A-Z0-9-]{3,20}$/.test(lot)) {
    $("complete-lot").setAttribute("aria-invalid", "true");
    announce(() => t("staff.lot_invalid"), "error");
    $("complete-lot").focus();
    return;
  }
  $("complete-lot").removeAttribute("aria-invalid");
  const body = { product: $("complete-product").value, lot_number: lot };
  if (state.override) {
    const reason = $("complete-override").value.trim();
    if (reason.length < 3) {
      $("complete-override").setAttribute("aria-invalid", "true");
      announce(() => t("staff.override_reason_needed"), "error");
      $("complete-override").focus();
      return;
    }
    $("complete-override").removeAttribute("aria-invalid");
    body.check_in_override_reason = reason;
  }
  const visit = state.current;
  const override = state.override;
  await visitAction(e, "complete", "complete", body, (a) =>
    t(override ? "staff.completed_override" : "staff.completed", {
      visit: visitLabel(visit),
      status: statusText(a.status),
    }),
  );
}

async function noShow(e) {
  e.preventDefault();
  const note = $("noshow-note").value.trim();
  const visit = state.current;
  // The answer says what became of dose 2: the staff can tell the patient.
  await visitAction(e, "noshow", "no-show", note ? { note } : {}, (a) => {
    const second = a.second_dose || { outcome: "not_applicable" };
    const more =
      second.outcome === "cancelled"
        ? t("staff.noshow_dose2_cancelled", { when: formatDateTime(second.starts_at) })
        : second.outcome === "not_booked"
          ? t("staff.noshow_dose2_none")
          : "";
    return `${t("staff.noshow_done", { visit: visitLabel(visit) })} ${more}`.trim();
  });
}

// -- walk-ins -------------------------------------------------------------------------------------
async function walkIn(e) {
  e.preventDefault();
  const pesel = checkPeselInput($("walkin-pesel"), $("walkin-pesel-msg"));
  if (!pesel) return;
  const lot = $("walkin-lot").value.trim().toUpperCase();
  const leftover = $("walkin-leftover").checked;
  const reason = $("walkin-reason").value.trim();
  if (leftover && reason.length < 3) {
    $("walkin-reason").setAttribute("aria-invalid", "true");
    announce(() => t("staff.leftover_reason_needed"), "error");
    $("walkin-reason").focus();
    return;
  }
  $("walkin-reason").removeAttribute("aria-invalid");
  const body = { pesel, product: $("walkin-product").value, lot_number: lot, leftover_dose: leftover };
  if (reason) body.reason = reason;
  await run(e.submitter, async () => {
    const result = await api("POST", pointPath("/walk-ins"), { body, action: "walk-in" });
    const v = result.vaccination;
    e.target.reset();
    if (state.visitsDate === v.given_on) await loadVisits();
    announce(() =>
      t("staff.walkin_done", {
        product: productName(v.product),
        dose: doseText(v),
      }),
    );
  });
}
