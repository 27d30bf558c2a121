// The point staff's app: calendar (week and day), publishing, slot changes, the day's visits.
import {
  addDays,
  announce,
  api,
  checkPeselInput,
  claims,
  dayOf,
  el,
  fillProducts,
  formatDay,
  formatDateTime,
  formatTime,
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

const $ = (id) => document.getElementById(id);

const state = {
  pointId: null,
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
      renderPoint();
      loadCalendar();
      loadVisits();
    });
  }
  renderPoint();
  buildWeekdayBoxes();
  for (const id of ["pub-product", "add-product", "walkin-product", "complete-product"]) {
    fillProducts($(id));
  }
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
  });
  if (state.pointId) {
    loadCalendar();
    loadVisits();
  }
}

function renderPoint() {
  $("point-label").textContent = state.pointId ? state.pointId : "";
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
    announce(
      t("staff.slot_changed", {
        slot: slotLabel(result.slot),
        cap: result.slot.capacity,
        n: result.displaced.length,
      }),
    );
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
    announce(t("staff.slot_removed", { slot: slotLabel(slot), n: result.displaced.length }));
  });
}

function confirmDialog(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    openDialog(dialog);
    $("confirm-ok").focus();
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
    announce(t("staff.weekdays_needed"), "error");
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
    announce(t("staff.published", { added: result.added, kept: result.kept }));
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
    announce(t("staff.slot_added", { slot: `${formatDay(body.day)} ${slotLabel(result.slot)}` }));
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
        if (v.status === "booked") {
          if (!v.checked_in_at) {
            actions.push(
              el("button", {
                type: "button",
                text: t("staff.checkin"),
                "aria-label": `${t("staff.checkin")}: ${label}`,
                onclick: () => openVisitDialog("checkin", v),
              }),
            );
          }
          actions.push(
            el("button", {
              type: "button",
              class: v.checked_in_at ? "primary" : "",
              text: t("staff.complete"),
              "aria-label": `${t("staff.complete")}: ${label}`,
              onclick: () => openVisitDialog("complete", v),
            }),
            el("button", {
              type: "button",
              text: t("staff.noshow"),
              "aria-label": `${t("staff.noshow")}: ${label}`,
              onclick: () => openVisitDialog("noshow", v),
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
}

function openVisitDialog(kind, visit) {
  state.current = visit;
  const text = `${formatDateTime(visit.starts_at)} · ${productName(visit.product)} · ${t(
    `dose.${visit.dose_kind}`,
    { n: visit.dose_number },
  )} · ${patientText(visit.patient)}`;
  $(`${kind}-visit`).textContent = text;
  if (kind === "checkin") {
    $("checkin-pesel").value = "";
    $("checkin-pesel").removeAttribute("aria-invalid");
    $("checkin-pesel-msg").textContent = "";
  } else if (kind === "complete") {
    $("complete-product").value = visit.product;
    $("complete-lot").value = "";
  } else {
    $("noshow-note").value = "";
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
    await loadVisits();
    announce(message(result.appointment));
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
  await visitAction(e, "checkin", "check-in", { pesel }, () =>
    t("staff.checked_in", { visit: visitLabel(visit) }),
  );
}

async function complete(e) {
  e.preventDefault();
  const lot = $("complete-lot").value.trim().toUpperCase();
  if (!/^[A-Z0-9-]{3,20}$/.test(lot)) {
    $("complete-lot").setAttribute("aria-invalid", "true");
    announce(t("staff.lot_invalid"), "error");
    $("complete-lot").focus();
    return;
  }
  $("complete-lot").removeAttribute("aria-invalid");
  const visit = state.current;
  await visitAction(
    e,
    "complete",
    "complete",
    { product: $("complete-product").value, lot_number: lot },
    (a) => t("staff.completed", { visit: visitLabel(visit), status: statusText(a.status) }),
  );
}

async function noShow(e) {
  e.preventDefault();
  const note = $("noshow-note").value.trim();
  const visit = state.current;
  await visitAction(e, "noshow", "no-show", note ? { note } : {}, () =>
    t("staff.noshow_done", { visit: visitLabel(visit) }),
  );
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
    announce(t("staff.leftover_reason_needed"), "error");
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
    announce(
      t("staff.walkin_done", {
        product: productName(v.product),
        dose: t(`dose.${v.dose_kind}`, { n: v.dose_number }),
      }),
    );
  });
}
