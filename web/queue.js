// The waiting room of a cohort opening (docs/fair-opening.md), as the patient's page and the
// hotline app show it: when the room opens and when booking opens; a button to join; while in
// the room, how many are in it (nobody's place exists before the moment: the order is drawn
// then); after the moment the place, the people ahead and the estimated wait; then the turn
// ("you have until 10:42"), when booking goes through with the ticket (X-Queue-Ticket).
//
// Polite polling: one request at a time, paced by what the server says (the moment, the
// estimated wait), Retry-After on 429/503, exponential back-off after other failures, nothing
// while the tab is hidden (Page Visibility API) and a check at once when it is shown again.
// Every time shown is the server's (its clock decides; the browser's may differ). The polite
// live region speaks when something changes for the person (joined, the draw, the turn, the
// turn passed) and, while the place moves, at most every two minutes: never at every poll.
import {
  ApiError,
  api,
  dismissError,
  el,
  errorDetails,
  errorText,
  formatDateTime,
  formatTime,
  onLanguageChange,
  productName,
  t,
} from "./app.js";

const LIST_POLL_S = 60; // no ticket yet: is the room open? (the list is answered from memory)
const MIN_POLL_S = 3;
const MAX_POLL_S = 30;
const MAX_BACKOFF_S = 120;
const SPEAK_EVERY_MS = 120000;
const MIN_GAP_MS = 2000; // a tab shown again checks at once, but not twice in a row

/** The birth year a PESEL encodes (the century is in the month), or null. */
export function birthYearOfPesel(pesel) {
  if (!/^\d{11}$/.test(pesel || "")) return null;
  const month = Number(pesel.slice(2, 4));
  const century = { 0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800 }[Math.floor(month / 20) * 20];
  return century === undefined ? null : century + Number(pesel.slice(0, 2));
}

/** Whether an opening (not yet open to all) governs a person born in `year` (and `product`). */
export function governs(opening, year, product = null) {
  if (!opening || opening.phase === "open" || year === null || year === undefined) return false;
  if (opening.born_from !== null && opening.born_from !== undefined && year < opening.born_from) return false;
  if (opening.born_to !== null && opening.born_to !== undefined && year > opening.born_to) return false;
  return !(product && opening.product && opening.product !== product);
}

/** Openings announced or under way (earliest first), with their phase. */
export async function listOpenings(options = {}) {
  const data = await api("GET", "/v1/openings", options);
  return data.openings || [];
}

/** Tickets kept in the tab's sessionStorage (the patient's own): a reload keeps the place. */
export function sessionTicketStore(uid) {
  const key = (openingId) => `erej.queue.${uid}.${openingId}`;
  return {
    get: (openingId) => {
      try {
        return sessionStorage.getItem(key(openingId));
      } catch {
        return null;
      }
    },
    set: (openingId, ticket) => {
      try {
        sessionStorage.setItem(key(openingId), ticket);
      } catch {
        /* storage disabled: the place is kept server-side, joining again finds it */
      }
    },
    clear: (openingId) => {
      try {
        sessionStorage.removeItem(key(openingId));
      } catch {
        /* ignore */
      }
    },
  };
}

/** Tickets kept in memory only (the agent's caller: gone with "End call"). */
export function memoryTicketStore() {
  const tickets = new Map();
  return {
    get: (openingId) => tickets.get(openingId) || null,
    set: (openingId, ticket) => tickets.set(openingId, ticket),
    clear: (openingId) => (openingId ? tickets.delete(openingId) : tickets.clear()),
  };
}

/** "about 5 min", "about 1 h 20 min", "less than a minute". */
export function waitText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return t("queue.wait_under_minute");
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return t("queue.wait_minutes", { n: minutes });
  return t("queue.wait_hours", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

/** Who an opening is for, in words. */
export function cohortText(o) {
  const from = o.born_from ?? null;
  const to = o.born_to ?? null;
  let who;
  if (from !== null && to !== null) who = from === to ? t("queue.who_year", { year: from }) : t("queue.who_years", { from, to });
  else if (from !== null) who = t("queue.who_from", { year: from });
  else if (to !== null) who = t("queue.who_to", { year: to });
  else who = t("queue.who_all");
  const extra = [];
  if (o.product) extra.push(t("queue.who_product", { product: productName(o.product) }));
  if (o.voivodeship) extra.push(t("queue.who_region", { region: o.voivodeship }));
  return [who, ...extra].join(" · ");
}

/** Whether a refusal is an opening's (403 cohort_not_open from its gate, 409 queue_turn_required). */
export function aboutOpening(err) {
  const d = (err && err.details) || {};
  return err instanceof ApiError && Boolean(d.opening_id) && (err.code === "cohort_not_open" || err.code === "queue_turn_required");
}

/**
 * The panel of one opening's waiting room in `host` (the page's #panels).
 * audience: "me" (the patient) or "caller" (an agent's caller); store: where tickets live;
 * joinBody(): the body of the join (the caller's PESEL and a reason, for an agent);
 * subject(): who the panel is about (the agent's caller, masked); onChange(panel): after each
 * change (the page enables booking on the turn); actions(panel): extra buttons (the agent's
 * "book the chosen slot" on the turn).
 */
export class QueuePanel {
  constructor(host, { audience = "me", store, joinBody = () => ({}), subject = () => "", onChange = () => {}, actions = () => [] }) {
    this.host = host;
    this.audience = audience;
    this.store = store;
    this.joinBody = joinBody;
    this.subject = subject;
    this.onChange = onChange;
    this.actions = actions;
    this.opening = null;
    this.ticket = null;
    this.position = null;
    this.phase = null;
    this.problem = null; // {err, retryS}: the last check failed, the next is in retryS
    this.timer = null;
    this.inFlight = false;
    this.failures = 0;
    this.lastPoll = 0;
    this.spoken = { state: null, at: 0, position: null };
    this.section = null;
    this.body = null;
    this.live = null;
    document.addEventListener("visibilitychange", () => this.visibilityChanged());
    onLanguageChange(() => {
      if (this.live) this.live.textContent = ""; // not re-read in the other language
      this.render();
    });
  }

  // -- what the page asks ------------------------------------------------------------------
  get active() {
    return Boolean(this.opening) && this.currentPhase() !== "open";
  }

  currentPhase() {
    return (this.position && this.position.phase) || this.phase || (this.opening && this.opening.phase);
  }

  /** The turn has come (and not passed): booking goes through with the ticket. */
  get admitted() {
    return Boolean(this.ticket && this.position && this.position.admitted);
  }

  /** Whether this opening governs a booking of `product` (at `point`) that would be refused now. */
  blocks(product, point = null) {
    if (!this.active) return false;
    const o = this.opening;
    if (product && o.product && o.product !== product) return false;
    if (o.voivodeship && point && point.voivodeship && point.voivodeship !== o.voivodeship) return false;
    return !this.admitted;
  }

  /** The header that carries the ticket (search, booking), when there is one. */
  headers() {
    return this.active && this.ticket ? { "X-Queue-Ticket": this.ticket } : {};
  }

  /** Show `opening`'s room: with the ticket kept for it (a reload keeps the place). */
  show(opening) {
    const same = this.opening && this.opening.opening_id === opening.opening_id;
    this.opening = opening;
    this.phase = opening.phase;
    if (!same) {
      this.ticket = this.store.get(opening.opening_id);
      this.position = null;
      this.problem = null;
      this.failures = 0;
      this.spoken = { state: null, at: 0, position: null };
    }
    if (opening.phase === "open") {
      this.hide();
      return;
    }
    this.render();
    // The state the page opens in is on the screen: remembered, not said (with a ticket, the
    // first answer about the place is).
    if (!this.ticket) this.speak(false);
    if (this.ticket) this.pollSoon(0);
    else this.schedule(LIST_POLL_S);
    this.onChange(this);
  }

  hide() {
    this.stop();
    this.opening = null;
    this.ticket = null;
    this.position = null;
    this.problem = null;
    if (this.section) this.section.remove();
    this.section = null;
    this.onChange(this);
  }

  /** Forget the tickets too (the agent's "End call"). */
  forget() {
    if (this.opening) this.store.clear(this.opening.opening_id);
    this.hide();
  }

  /**
   * A booking was refused because of an opening (403 cohort_not_open from the gate, 409
   * queue_turn_required): show its room as the answer says. False when the refusal is not
   * about an opening (a cohort of the rule book, say).
   */
  async refused(err) {
    if (!aboutOpening(err)) return false;
    const d = err.details;
    let opening = this.opening && this.opening.opening_id === d.opening_id ? this.opening : null;
    if (!opening) {
      const openings = await listOpenings().catch(() => []);
      opening = openings.find((o) => o.opening_id === d.opening_id);
    }
    if (!opening) return false;
    if (err.code === "queue_turn_required") opening = { ...opening, phase: "queue" };
    this.show(opening);
    if (err.code === "queue_turn_required" && d.phase && this.ticket) {
      this.position = { ...d };
      this.render();
    }
    this.section.focus();
    return true;
  }

  // -- joining -----------------------------------------------------------------------------
  async join(button) {
    const opening = this.opening;
    if (!opening) return;
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    }
    try {
      // Joining again keeps the place (a new ticket, never a second place): no key needed.
      const result = await api("POST", `/v1/openings/${encodeURIComponent(opening.opening_id)}/queue`, {
        body: this.joinBody(),
        idempotent: false,
      });
      if (!this.opening || this.opening.opening_id !== opening.opening_id) return;
      this.phase = result.phase;
      if (!result.ticket) {
        this.hide(); // open to all: no queue any more
        return;
      }
      this.ticket = result.ticket;
      this.store.set(opening.opening_id, result.ticket);
      this.position = result.position;
      this.problem = null;
      this.failures = 0;
      this.render();
      this.speak(true);
      this.schedule(this.nextDelayS());
      this.onChange(this);
      this.section.focus();
    } catch (err) {
      this.showError(err);
    } finally {
      if (button && button.isConnected) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
    }
  }

  // -- polling -----------------------------------------------------------------------------
  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  schedule(seconds) {
    this.stop();
    if (seconds === null || !this.opening || document.hidden) return;
    this.timer = setTimeout(() => this.poll(), Math.max(0, seconds * 1000));
  }

  pollSoon(ms) {
    this.stop();
    if (!this.opening || document.hidden) return;
    this.timer = setTimeout(() => this.poll(), ms);
  }

  visibilityChanged() {
    if (!this.opening) return;
    if (document.hidden) {
      this.stop(); // nobody is looking: no requests until the tab is shown again
      return;
    }
    if (this.position && this.position.expired) return;
    this.pollSoon(Math.max(0, MIN_GAP_MS - (Date.now() - this.lastPoll)));
  }

  async poll() {
    this.timer = null;
    if (!this.opening || this.inFlight || document.hidden) return;
    this.inFlight = true;
    this.lastPoll = Date.now();
    const opening = this.opening;
    try {
      if (this.ticket) {
        const data = await api("GET", `/v1/openings/${encodeURIComponent(opening.opening_id)}/queue`, {
          headers: { "X-Queue-Ticket": this.ticket },
          retry: false,
        });
        if (this.opening !== opening) return;
        this.position = data.position;
        this.phase = data.position.phase;
      } else {
        const openings = await listOpenings({ retry: false });
        if (this.opening !== opening) return;
        const fresh = openings.find((o) => o.opening_id === opening.opening_id);
        if (!fresh) {
          this.hide();
          return;
        }
        this.opening = fresh;
        this.phase = fresh.phase;
      }
      this.problem = null;
      this.failures = 0;
      if (this.currentPhase() === "open") {
        this.hide();
        return;
      }
      this.render();
      this.speak(false);
      this.onChange(this);
      this.schedule(this.nextDelayS());
    } catch (err) {
      if (this.opening !== opening) return;
      this.failed(err);
    } finally {
      this.inFlight = false;
    }
  }

  failed(err) {
    if (err instanceof ApiError && err.code === "queue_ticket_invalid") {
      // Not this person's, or signed under another key: the place is kept server-side and
      // joining again finds it.
      this.store.clear(this.opening.opening_id);
      this.ticket = null;
      this.position = null;
      this.render();
      this.onChange(this);
      this.schedule(LIST_POLL_S);
      return;
    }
    if (err instanceof ApiError && (err.code === "opening_not_found" || err.status === 404)) {
      this.hide();
      return;
    }
    let delay;
    const retryAfter = Number.parseFloat((err && err.details && err.details.retry_after) || "");
    if (err instanceof ApiError && (err.status === 429 || err.status === 503) && retryAfter > 0) {
      delay = retryAfter + Math.random() * Math.min(retryAfter, 2);
    } else {
      this.failures += 1;
      delay = Math.min(MAX_BACKOFF_S, 5 * 2 ** (this.failures - 1)) * (0.75 + Math.random() / 2);
    }
    this.problem = { err, retryS: Math.ceil(delay) };
    this.render();
    this.schedule(delay);
  }

  /** When to look again: the server's estimate paces it (and spreads everyone out). */
  nextDelayS() {
    if (!this.ticket) return LIST_POLL_S;
    const p = this.position;
    if (!p) return MAX_POLL_S;
    if (p.expired) return null; // nothing will change by itself: join again
    if (p.admitted) return MAX_POLL_S; // the turn's end is known; see it pass
    const wait = p.estimated_wait_s ?? MAX_POLL_S;
    if (p.position === null || p.position === undefined) {
      // Before the moment: look again just after it (the draw), spread over a few seconds.
      return wait < MAX_POLL_S ? wait + 1 + Math.random() * 4 : MAX_POLL_S + Math.random() * 3;
    }
    return Math.min(MAX_POLL_S, Math.max(MIN_POLL_S, wait / 2)) + Math.random() * 2;
  }

  // -- what is said ------------------------------------------------------------------------
  state() {
    const phase = this.currentPhase();
    const p = this.position;
    if (phase === "announced") return "announced";
    if (!this.ticket) return phase === "queue" ? "queue_open" : "room_open";
    if (!p || p.position === null || p.position === undefined) return "in_room";
    if (p.expired) return "expired";
    if (p.admitted) return "turn";
    return "waiting";
  }

  say(key, params) {
    return t(`queue.${this.audience}.${key}`, params);
  }

  stateText(state) {
    const o = this.opening;
    const p = this.position || {};
    const params = {
      opens: formatDateTime(o.opens_at),
      room: formatDateTime(o.window_opens_at),
      time: formatTime(o.opens_at),
      until: p.turn_ends_at ? formatTime(p.turn_ends_at) : "",
      turn: o.turn_minutes ?? 10,
    };
    return this.say(state, params);
  }

  liveText(state) {
    const p = this.position || {};
    if (state === "in_room") return `${this.stateText(state)} ${t("queue.in_room", { n: p.in_room ?? 0 })}.`;
    if (state === "waiting") {
      return this.say("live_waiting", { position: p.position, ahead: p.ahead, wait: waitText(p.estimated_wait_s) });
    }
    return this.stateText(state);
  }

  /** Into the polite live region: a change of state, or the place moving (every 2 min). */
  speak(force) {
    if (!this.live || !this.opening) return;
    const state = this.state();
    const now = Date.now();
    const previous = this.spoken;
    const p = this.position || {};
    let due = force || (previous.state !== null && previous.state !== state);
    if (!due && state === "waiting" && previous.state === state) {
      due = now - previous.at >= SPEAK_EVERY_MS && p.position !== previous.position;
    }
    if (previous.state === null && !force) {
      // The state the page opened in is on the screen already: nothing to announce.
      this.spoken = { state, at: now, position: p.position ?? null };
      return;
    }
    if (!due) return;
    // A refusal shown earlier ("not your turn yet") no longer applies once the state moves on.
    if (previous.state !== state) dismissError();
    this.live.textContent = this.liveText(state);
    this.spoken = { state, at: now, position: p.position ?? null };
  }

  showError(err) {
    this.problem = null;
    const box = this.section && this.section.querySelector(".queue-error");
    if (!box) return;
    box.replaceChildren(
      el("span", { class: "error-text", text: errorText(err) }),
      el("details", { class: "error-details" }, el("summary", { text: t("error.details") }), el("p", { class: "mono", text: errorDetails(err) })),
    );
    box.hidden = false;
  }

  // -- drawing -----------------------------------------------------------------------------
  frame() {
    if (this.section) return;
    const id = `queue-heading-${this.audience}`;
    this.body = el("div", { class: "queue-body" });
    // The live region exists before it speaks (screen readers watch it from the start).
    this.live = el("p", { class: "visually-hidden queue-live", role: "status", "aria-live": "polite" });
    this.section = el(
      "section",
      { class: "card queue-panel", id: `queue-${this.audience}`, "aria-labelledby": id, tabindex: "-1" },
      el("h2", { id }),
      this.body,
      el("div", { class: "error queue-error", role: "alert", hidden: true }),
      this.live,
    );
    this.host.append(this.section);
  }

  render() {
    if (!this.opening) return;
    this.frame();
    const o = this.opening;
    const p = this.position || {};
    const state = this.state();
    this.section.dataset.state = state;
    this.section.querySelector("h2").textContent = t("queue.heading");
    const who = this.subject();
    const facts = [
      [t("queue.for"), cohortText(o)],
      [t("queue.room_opens"), formatDateTime(o.window_opens_at)],
      [t("queue.booking_opens"), formatDateTime(o.opens_at)],
    ];
    const numbers = [];
    if (state === "in_room") numbers.push(["in_room", t("queue.in_room_label"), String(p.in_room ?? 0)]);
    if (state === "waiting") {
      numbers.push(
        ["position", this.say("position_label"), String(p.position)],
        ["ahead", this.say("ahead_label"), String(p.ahead ?? 0)],
        ["wait", t("queue.wait_label"), waitText(p.estimated_wait_s)],
      );
    }
    const buttons = [];
    if (state === "room_open" || state === "queue_open" || state === "expired") {
      const key = state === "expired" ? "rejoin" : state === "queue_open" ? "join_queue" : "join";
      buttons.push(
        el("button", {
          type: "button",
          class: "primary queue-join",
          text: this.say(key),
          onclick: (e) => this.join(e.currentTarget),
        }),
      );
    }
    if (state === "turn") buttons.push(...this.actions(this));
    const parts = [
      who ? el("p", { class: "queue-subject", text: who }) : null,
      el("dl", { class: "review-list queue-facts" }, facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
      el("p", { class: `queue-state queue-state-${state}`, text: this.stateText(state) }),
      numbers.length
        ? el(
            "dl",
            { class: "queue-numbers" },
            numbers.map(([name, k, v]) =>
              el("div", { class: `queue-number queue-${name}` }, el("dt", { text: k }), el("dd", { text: v })),
            ),
          )
        : null,
      state === "in_room" || state === "waiting" ? el("p", { class: "hint", text: this.say("keep_place") }) : null,
      buttons.length ? el("div", { class: "form-actions" }, buttons) : null,
      this.problem
        ? el("p", { class: "hint queue-problem", text: t("queue.check_failed", { s: this.problem.retryS }) })
        : null,
    ];
    this.body.replaceChildren(...parts.filter(Boolean));
    if (!this.problem) {
      const box = this.section.querySelector(".queue-error");
      if (box && state !== "room_open" && state !== "queue_open" && state !== "expired") {
        box.replaceChildren();
        box.hidden = true;
      }
    }
  }
}
