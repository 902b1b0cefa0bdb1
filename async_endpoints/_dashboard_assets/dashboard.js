// The dashboard's only script, written for it: keeps the page's live part current and its
// times relative. Everything works without it (plain links and forms).
"use strict";
(function () {
  // An action's notice is told once: reloading or bookmarking the page does not tell it
  // again (the notice codes leave the address; the notice stays on the page shown).
  (function forgetNotice() {
    var url = new URL(window.location.href);
    var told = ["done", "subject", "subject_queue"];
    if (!told.some(function (key) { return url.searchParams.has(key); })) return;
    told.forEach(function (key) { url.searchParams.delete(key); });
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  })();

  var REFRESH_MS = 1000;
  var live = document.getElementById("live");
  var state = document.getElementById("live-state");
  // A page answered 404 from the start (no such page, job or batch) has nothing to follow.
  if (!live || !state || live.hasAttribute("data-still")) return;
  state.hidden = false; // said only where this script runs: without it nothing updates
  var offset = 0; // server clock minus browser clock, in ms

  function readServerNow(root) {
    var now = Date.parse(root.getAttribute("data-server-now") || "");
    if (!isNaN(now)) offset = now - Date.now();
  }

  // As the server writes it (_dashboard_views.ago): "42 s", "5 min", "1 h 59 min", "2 d 3 h".
  function amount(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    var big, small, unit, next;
    if (seconds < 86400) {
      big = Math.floor(seconds / 3600); small = Math.floor(seconds / 60) % 60; unit = " h"; next = " min";
    } else {
      big = Math.floor(seconds / 86400); small = Math.floor(seconds / 3600) % 24; unit = " d"; next = " h";
    }
    return big + unit + (small ? " " + small + next : "");
  }

  function ago(ms) {
    var seconds = Math.floor(Math.abs(ms) / 1000);
    if (seconds < 1) return "just now";
    return ms >= 0 ? amount(seconds) + " ago" : "in " + amount(seconds);
  }

  function relativeTimes() {
    var now = Date.now() + offset;
    var times = live.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute("datetime"));
      if (isNaN(at)) continue;
      times[i].textContent = ago(now - at);
      // The hover says the moment in UTC (as the server wrote it) and in the browser's
      // own time zone, once.
      if (!times[i].hasAttribute("data-local")) {
        var local = new Date(at).toLocaleString(undefined, { timeZoneName: "short" });
        times[i].setAttribute("data-local", local);
        times[i].title = times[i].title + " · " + local;
      }
    }
  }

  // Jobs ticked for a bulk action stay ticked when the list is redrawn, for that action
  // only: a job no longer listed, or whose status moved it to the other action (a waiting
  // job ticked to cancel that failed meanwhile), drops out. The header's box ticks every
  // one of the page; each bulk form's button counts the boxes ticked for it.
  var PICKS = 'input[type="checkbox"][name="job_id"]';
  var PICK_ALL = "input[data-pick-all]";
  var BULK = { "requeue-selected": "Requeue selected", "cancel-selected": "Cancel selected" };

  function pick(box) {
    return box.getAttribute("form") + " " + box.value;
  }

  function ticked() {
    var picks = [];
    var boxes = live.querySelectorAll(PICKS);
    for (var i = 0; i < boxes.length; i++) if (boxes[i].checked) picks.push(pick(boxes[i]));
    return picks;
  }

  function tick(picks) {
    var boxes = live.querySelectorAll(PICKS);
    for (var i = 0; i < boxes.length; i++) boxes[i].checked = picks.indexOf(pick(boxes[i])) >= 0;
  }

  function showPicks() {
    var boxes = live.querySelectorAll(PICKS);
    var count = ticked().length;
    var all = live.querySelector(PICK_ALL);
    if (all) {
      all.hidden = false; // it needs this script, so it shows only with it
      all.checked = boxes.length > 0 && count === boxes.length;
      all.indeterminate = count > 0 && count < boxes.length;
    }
    for (var form in BULK) {
      var button = live.querySelector('button[data-action="' + form + '"]');
      if (!button) continue;
      var picked = live.querySelectorAll(PICKS + '[form="' + form + '"]:checked').length;
      button.textContent = picked ? BULK[form] + " (" + picked + ")" : BULK[form];
      button.disabled = !picked; // nothing ticked: nothing to ask about or to send
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target.matches) return;
    if (target.matches(PICK_ALL)) {
      var boxes = live.querySelectorAll(PICKS);
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = target.checked;
    }
    if (target.matches(PICK_ALL) || target.matches(PICKS)) showPicks();
  });

  // Actions that change much at once ask first (without the script they just run). An
  // action on its way says so on the button clicked and is not sent twice; the page
  // stops redrawing until the answer (a slow store can take seconds) replaces it.
  var sending = false;
  var SEND_PATIENCE_MS = 30000; // the store's own calls give up well before
  // A page the browser shows again from its history (Back) is loaded afresh: an action's
  // "Working…" button and a stopped refresh are not brought back.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.getAttribute || (form.method || "").toLowerCase() !== "post") return;
    if (sending) {
      event.preventDefault();
      return;
    }
    var question = form.getAttribute("data-confirm");
    if (question) {
      if (!window.confirm(question)) {
        event.preventDefault();
        return;
      }
      // Asked here: the dashboard does not ask again (without this script it does).
      var answered = form.querySelector('input[name="confirmed"]');
      if (answered) answered.value = "1";
    }
    sending = true;
    var button = event.submitter || form.querySelector('button[type="submit"]');
    var label = button ? button.textContent : "";
    if (button) {
      button.setAttribute("aria-busy", "true");
      button.classList.add("working");
      button.textContent = "Working…";
    }
    // A navigation stopped (Esc) or answered with no page leaves this page in place:
    // after a while it is usable again rather than stuck.
    setTimeout(function () {
      sending = false;
      if (!button) return;
      button.removeAttribute("aria-busy");
      button.classList.remove("working");
      button.textContent = label;
    }, SEND_PATIENCE_MS);
  });

  var busy = false;
  var gone = false; // the job or batch of this page no longer exists: nothing to follow
  var denied = false; // authorize refuses this browser now: nothing to follow until a reload
  var reload = live.hasAttribute("data-reload-when-back"); // a page the store could not fill
  var last = null; // the live part as last fetched: an unchanged one is not redrawn
  var lastTag = null; // its entity tag: the server answers 304, sending nothing, while it holds
  var holding = false; // a pointer is down: redrawing now could swallow the click
  var aiming = false; // the pointer rests on a button or link: a redraw could move
  // another row's button under it, and the click would act on the wrong job
  var CONTROLS = "button, a, input, select, summary";
  document.addEventListener("pointerdown", function () { holding = true; });
  document.addEventListener("pointerup", function () { holding = false; });
  document.addEventListener("pointercancel", function () { holding = false; });
  live.addEventListener("pointerover", function (event) {
    aiming = !!(event.target.closest && event.target.closest(CONTROLS));
  });
  live.addEventListener("pointerleave", function () { aiming = false; });

  // Whether redrawing now would disturb the user: a click on its way, a focused control
  // (keyboard users), or text selected in the live part (an id being copied).
  function inUse() {
    if (holding || aiming) return true;
    var focused = document.activeElement;
    // Focus a keyboard user moved there (a mouse click leaves focus behind, unseen).
    if (focused && focused !== live && live.contains(focused) && focused.matches(":focus-visible")) return true;
    var selection = window.getSelection ? window.getSelection() : null;
    return !!(selection && !selection.isCollapsed && live.contains(selection.anchorNode));
  }

  // The corner's state (a role=status: changed only when it changes, so that a screen
  // reader is not told "live" every second). ``keepLook``: the list keeps its look (a
  // pause says nothing of whether what is shown is current).
  function show(text, kind, title, keepLook) {
    var className = "live" + (kind ? " " + kind : "");
    if (state.className !== className) state.className = className;
    if (state.textContent !== text) state.textContent = text;
    if (state.title !== title) state.title = title;
    if (!keepLook) live.classList.toggle("stale", kind === "stale");
  }

  // The corner once an answer is shown: its job or batch gone (the dashboard's 404: the
  // page stops following), or live.
  function showAnswered(missing) {
    gone = missing;
    if (gone) show("stopped", "held", "What this page showed no longer exists: it stopped updating");
    else show("live", "", "This page updates itself every second");
  }

  // What the corner says when nothing holds the updates: the last thing learnt.
  function showFollowing() {
    if (denied) show("no access", "stale", "The dashboard no longer answers this browser (signed out, or access withdrawn): sign in again and reload the page");
    else if (gone) show("stopped", "held", "What this page showed no longer exists: it stopped updating");
    else if (live.classList.contains("stale")) show("reconnecting", "stale", "The server did not answer; what is shown may be out of date");
    else show("live", "", "This page updates itself every second");
  }

  // Updates paused by the user (the header's button), for this tab's session: the page
  // and its times then stay as they are until resumed.
  var brand = document.querySelector(".top .brand");
  var PAUSED_KEY = "async-endpoints-dashboard-paused " + (brand ? brand.getAttribute("href") : "");
  var pauseButton = document.getElementById("live-pause");
  var paused = false;
  try { paused = window.sessionStorage.getItem(PAUSED_KEY) === "1"; } catch (e) { paused = false; }

  function showPaused() {
    if (!pauseButton) return;
    pauseButton.hidden = false;
    pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (paused) show("paused", "held", "Updates are paused: Resume updates to follow the jobs again", true);
  }

  if (pauseButton) {
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      try { window.sessionStorage.setItem(PAUSED_KEY, paused ? "1" : "0"); } catch (e) { /* kept for this page only */ }
      showPaused();
      if (!paused) {
        showFollowing();
        refresh();
      }
    });
  }

  function refresh() {
    if (paused || busy || gone || denied || sending || document.hidden) return;
    if (inUse()) {
      // While the server does not answer, that is what the corner keeps saying.
      if (state.classList.contains("stale")) return;
      show("updates held", "held", "Updates wait while the pointer is on a button or link, a control has the focus or text is selected");
      return;
    }
    busy = true;
    var tag = null; // the entity tag of this answer's part: held once that part is shown
    var missing = false; // this answer is the dashboard's 404: learnt once it is shown
    var headers = { "X-Dashboard-Fragment": "1" };
    if (lastTag !== null && last !== null) headers["If-None-Match"] = lastTag;
    fetch(window.location.href, {
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (answer) {
        if (answer.status === 304) {
          tag = lastTag;
          return last; // unchanged since the part shown was fetched: nothing was sent
        }
        // The dashboard's own 404 is an answer (the job or batch is gone: its page says
        // so), not an outage; the app's 404 means authorize says no now (signed out).
        var ours = answer.headers.get("X-Dashboard-Fragment") === "1";
        if (answer.status === 404 && !ours) {
          denied = true;
          return last;
        }
        if (!answer.ok && !(answer.status === 404 && ours)) throw new Error(String(answer.status));
        if (reload) {
          // The store is back: the whole page (its title and filters too), not just this
          // part; not while paused (Resume asks again, and reloads then).
          if (!paused) window.location.reload();
          return last;
        }
        missing = answer.status === 404;
        tag = answer.headers.get("ETag");
        return answer.text();
      })
      .then(function (html) {
        if (paused) return; // paused while this answer was on its way: not drawn
        if (denied) {
          show("no access", "stale", "The dashboard no longer answers this browser (signed out, or access withdrawn): sign in again and reload the page");
          return;
        }
        // The tag goes with the part on screen: a part fetched but not drawn (the page was
        // in use) must be fetched whole again, not answered 304. What the answer says
        // (the job is gone) is learnt only with the part that says it on screen.
        if (html === last) {
          showAnswered(missing);
          lastTag = tag;
          return;
        }
        if (inUse() || sending) return;
        showAnswered(missing);
        last = html;
        lastTag = tag;
        var scrolled = [];
        var boxes = live.querySelectorAll("pre, .scroll");
        for (var i = 0; i < boxes.length; i++) scrolled.push([boxes[i].scrollTop, boxes[i].scrollLeft]);
        var picks = ticked();
        live.innerHTML = html; // server-rendered and escaped; scripts never run from it
        tick(picks);
        showPicks();
        boxes = live.querySelectorAll("pre, .scroll");
        for (var j = 0; j < boxes.length && j < scrolled.length; j++) {
          boxes[j].scrollTop = scrolled[j][0];
          boxes[j].scrollLeft = scrolled[j][1];
        }
        relativeTimes();
      })
      .catch(function () {
        if (paused) {
          live.classList.add("stale"); // told when resumed (showFollowing)
          return;
        }
        show("reconnecting", "stale", "The server did not answer; what is shown may be out of date");
      })
      .then(function () {
        busy = false;
      });
  }

  readServerNow(live);
  relativeTimes();
  showPicks();
  showPaused();
  setInterval(function () { if (!paused) relativeTimes(); }, REFRESH_MS);
  setInterval(refresh, REFRESH_MS);
})();
