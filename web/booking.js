// The review before a booking (or a move) and the confirmation after it, shared by the
// patient's and the agent's pages: both doses with their times, the place with a map link,
// what to bring; then a booking reference, the .ics file and the SMS the patient gets.
import {
  addDays,
  api,
  dayOf,
  doseText,
  dosesText,
  el,
  formatDateTime,
  formatTime,
  placeBlock,
  placeText,
  productName,
  t,
} from "./app.js";
import { calendarFile, calendarHref } from "./ics.js";

const MAX_RANGE_DAYS = 60; // the API's widest date range for a point's slots

/**
 * Dose 2's slot for a two-dose product, chosen now so that the review can show it: the free
 * slot at the same point nearest the planned day (then nearest the same hour), inside the
 * product's window. Returns {choice, candidates} (choice null: no free slot in the window).
 */
export async function planSecondDose(point, first, info) {
  const day = dayOf(first.starts_at);
  const from = addDays(day, info.min_interval_days);
  const to = addDays(day, Math.min(info.max_interval_days, info.min_interval_days + MAX_RANGE_DAYS));
  const data = await api("GET", `/v1/points/${encodeURIComponent(point.point_id)}/slots`, {
    query: { product: first.product, date_from: from, date_to: to },
  });
  const planned = new Date(`${addDays(day, info.planned_interval_days)}T12:00:00Z`).getTime();
  const minutes = (iso) => {
    const [h, m] = formatTime(iso).split(":").map(Number);
    return h * 60 + m;
  };
  const firstMinutes = minutes(first.starts_at);
  const candidates = data.slots
    .filter((s) => s.free > 0 && s.slot_id !== first.slot_id)
    .map((s) => ({
      slot: s,
      score:
        Math.abs(new Date(`${dayOf(s.starts_at)}T12:00:00Z`).getTime() - planned) / 864e5 * 1000 +
        Math.abs(minutes(s.starts_at) - firstMinutes),
    }))
    .sort((a, b) => a.score - b.score)
    .map((c) => c.slot);
  return { choice: candidates[0] || null, candidates };
}

/** What to bring and how to prepare (the same list on the review and the confirmation). */
export function whatToBring() {
  return el(
    "div",
    { class: "bring" },
    el("h3", { text: t("review.bring_heading") }),
    el(
      "ul",
      {},
      ["review.bring_id", "review.bring_form", "review.bring_meds", "review.bring_sleeve", "review.bring_early"].map(
        (k) => el("li", { text: t(k) }),
      ),
    ),
  );
}

/** The two-dose commitment, or the single dose, in plain words. */
export function commitmentText(info) {
  if (!info) return "";
  if (info.doses === 2 && info.books_second_dose !== false) {
    return t("review.commitment_two", {
      product: productName(info.product),
      min: info.min_interval_days,
      max: info.max_interval_days,
      planned: info.planned_interval_days,
    });
  }
  if (info.doses === 2) return t("review.commitment_second", { product: productName(info.product) });
  return t("review.commitment_one", { product: productName(info.product) });
}

/**
 * The review of a booking: the vaccine and its commitment, both doses (dose 2 may be
 * changed among `candidates`), the place, what to bring. `onSecond(slot)` hears a change.
 */
export function reviewContent({ first, second, candidates, point, info, onSecond, moving }) {
  const rows = [
    el("dt", { text: t("common.product") }),
    el("dd", {}, productName(first.product), el("br"), el("span", { class: "muted", text: dosesText(info) })),
    el("dt", { text: moving ? t("review.new_time") : t("review.dose1") }),
    el("dd", { class: "review-dose1", text: formatDateTime(first.starts_at) }),
  ];
  if (moving) {
    rows.unshift(
      el("dt", { text: t("review.old_time") }),
      el("dd", { class: "review-old", text: `${formatDateTime(moving.starts_at)}, ${placeText(moving.point, moving.point_id)}` }),
    );
  }
  if (info && info.doses === 2 && info.books_second_dose && !moving) {
    rows.push(el("dt", { text: t("review.dose2") }));
    if (second) {
      const select = el(
        "select",
        { id: "review-second", "aria-describedby": "review-second-hint" },
        candidates.slice(0, 30).map((s) => new Option(formatDateTime(s.starts_at), s.slot_id)),
      );
      select.value = second.slot_id;
      select.addEventListener("change", () => onSecond(candidates.find((s) => s.slot_id === select.value)));
      rows.push(
        el(
          "dd",
          {},
          el("span", { class: "review-dose2", text: formatDateTime(second.starts_at) }),
          el("label", { for: "review-second", class: "small-label", text: t("review.dose2_change") }),
          select,
          el("p", { id: "review-second-hint", class: "hint", text: t("review.dose2_hint") }),
        ),
      );
    } else {
      rows.push(el("dd", { class: "error-inline", text: t("review.no_second_slot") }));
    }
  }
  rows.push(el("dt", { text: t("review.place") }), el("dd", {}, placeBlock(point, point.point_id, { directions: true, phone: true })));
  return [
    el("p", { class: "commitment", text: commitmentText(info) }),
    el("dl", { class: "review-list" }, rows),
    whatToBring(),
  ];
}

/** A short booking reference a person can read out on the phone: "7F3A-91C2". */
export function bookingReference(appointments) {
  const id = (appointments[0] && (appointments[0].series_id || appointments[0].appointment_id)) || "";
  const s = id.slice(0, 8).toUpperCase();
  return `${s.slice(0, 4)}-${s.slice(4, 8)}`;
}

/** The .ics file of these visits (one event each). */
export function icsText(appointments) {
  return calendarFile(
    appointments.map((a) => ({
      uid: `${a.appointment_id}@e-rejestracja`,
      start: a.starts_at,
      minutes: 15,
      summary: `${t("ics.summary", { product: productName(a.product) })} (${doseText(a)})`,
      location: placeText(a.point, a.point_id),
      lat: a.point && a.point.lat,
      lon: a.point && a.point.lon,
      description: `${t("ics.description", { ref: bookingReference([a]) })}\n${t("review.bring_id")}`,
    })),
    { name: t("ics.calendar_name") },
  );
}

/** The confirmation of a booking or a move: reference, visits, place, .ics, the SMS. */
export function confirmationContent(
  appointments,
  confirmation,
  { heading = "confirm.booked", smsText = "confirm.sms_text" } = {},
) {
  const booked = appointments.filter((a) => a.status === "booked");
  const point = booked[0] && booked[0].point;
  const messages = (confirmation && confirmation.messages) || [];
  return [
    el("p", { class: "confirm-lead", text: t(heading) }),
    el(
      "p",
      { class: "reference" },
      `${t("confirm.reference")}: `,
      el("strong", { class: "mono", "data-reference": "", text: bookingReference(booked) }),
    ),
    el(
      "ul",
      { class: "confirm-visits" },
      booked.map((a) =>
        el("li", {}, el("strong", { text: `${doseText(a)}: ` }), `${formatDateTime(a.starts_at)} · ${productName(a.product)}`),
      ),
    ),
    point ? placeBlock(point, booked[0].point_id, { directions: true, phone: true }) : null,
    el(
      "p",
      {},
      el("a", {
        class: "ics-link button-link",
        href: calendarHref(icsText(booked)),
        download: "szczepienie.ics",
        text: t("confirm.add_to_calendar"),
      }),
    ),
    messages.length
      ? el(
          "div",
          { class: "sms-copy" },
          el("h3", { text: t("confirm.sms_heading") }),
          el("p", { class: "hint", text: t(smsText) }),
          messages.map((m) => el("blockquote", { class: "sms", lang: "pl", text: m })),
        )
      : null,
    whatToBring(),
  ];
}
