// emplifai collect: character counters, server-side drafts and rating progress. Every page works without this
// file (the server counts, saves drafts through the 下書き保存 button and shows progress); it only makes them live.
"use strict";
(function () {
  function chars(s) { return Array.from(s).length; }  // code points, as the server counts

  function updateCounter(area) {
    var out = document.getElementById(area.id + "-count");
    if (!out) { return; }
    var n = chars(area.value), limit = parseInt(area.dataset.limit, 10);
    out.textContent = n + " / " + limit + " 文字";
    out.classList.toggle("over", n > limit);
    if (n > limit) { out.textContent += "（" + (n - limit) + " 文字多すぎます）"; }
  }

  function updateProgress(form) {
    var total = 0, done = 0, cards = 0, full = 0;
    form.querySelectorAll("[data-item]").forEach(function (card) {
      var groups = card.querySelectorAll("fieldset.scale");
      var answered = card.querySelectorAll("fieldset.scale input:checked").length;
      var badge = card.querySelector("[data-progress]");
      if (badge) { badge.textContent = answered + " / " + groups.length; }
      card.classList.toggle("complete", answered === groups.length);
      var chip = document.querySelector("[data-chip='" + cards + "']");
      if (chip) { chip.classList.toggle("complete", answered === groups.length); }
      total += groups.length; done += answered; cards += 1; if (answered === groups.length) { full += 1; }
    });
    var top = document.getElementById("rating-progress");
    if (top && cards) {
      top.querySelector("[data-done]").textContent = full + " / " + cards;
      top.querySelector("[data-answered]").textContent = done + " / " + total;
      var bar = top.querySelector(".bar span");
      if (bar) { bar.style.width = Math.round(100 * done / total) + "%"; }
    }
  }

  // One dialogue at a time on the rating page; the chips and 前/次 buttons move between them.
  function stepper(form) {
    var cards = Array.prototype.slice.call(form.querySelectorAll("[data-item]"));
    if (cards.length < 2) { return; }
    var chips = document.querySelectorAll("[data-chip]"), at = 0;
    function show(i, scroll) {
      at = Math.max(0, Math.min(cards.length - 1, i));
      cards.forEach(function (c, k) { c.classList.toggle("current", k === at); });
      chips.forEach(function (c, k) { c.classList.toggle("current", k === at); });
      form.querySelectorAll("[data-step='-1']").forEach(function (b) { b.disabled = at === 0; });
      form.querySelectorAll("[data-step='1']").forEach(function (b) { b.disabled = at === cards.length - 1; });
      if (scroll) { cards[at].scrollIntoView({block: "start"}); }
    }
    form.classList.add("stepper");
    form.querySelectorAll(".stepnav").forEach(function (n) { n.hidden = false; });
    form.querySelectorAll("[data-step]").forEach(function (b) {
      b.addEventListener("click", function () { show(at + parseInt(b.dataset.step, 10), true); });
    });
    chips.forEach(function (c, k) {
      c.addEventListener("click", function (e) { e.preventDefault(); show(k, true); });
    });
    // The browser can only point at a missing answer it can see: show that dialogue first.
    var reported = false;
    form.addEventListener("invalid", function (e) {
      if (reported) { return; }  // one event per missing control: the first (in page order) decides
      reported = true;
      setTimeout(function () { reported = false; }, 0);
      var card = e.target.closest("[data-item]");
      if (card && !card.classList.contains("current")) { show(cards.indexOf(card), false); }
    }, true);
    var first = cards.findIndex(function (c) { return !c.classList.contains("complete"); });
    show(first < 0 ? 0 : first, false);
  }

  function draftSaver(form) {
    var status = document.getElementById("draft-status"), timer = null, busy = false, again = false;
    function say(text, bad) {
      if (status) { status.textContent = text; status.classList.toggle("bad", !!bad); }
    }
    function send() {
      if (busy) { again = true; return; }
      busy = true;
      var body = new FormData(form);
      fetch(form.dataset.draftUrl, {method: "POST", body: body, credentials: "same-origin",
                                    headers: {"X-Emplifai-Draft": "1"}})
        .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
        .then(function (res) {
          if (res[0]) {
            var t = new Date();
            say("下書きを保存しました（" + t.getHours() + ":" + String(t.getMinutes()).padStart(2, "0") + "）");
          } else { say("下書きを保存できませんでした：" + (res[1].error || ""), true); }
        })
        .catch(function () { say("下書きを保存できませんでした（通信エラー）。「下書き保存」を押してください", true); })
        .finally(function () { busy = false; if (again) { again = false; send(); } });
    }
    function soon(delay) { clearTimeout(timer); timer = setTimeout(send, delay); }
    form.addEventListener("change", function () { soon(150); });
    form.addEventListener("input", function (e) { if (e.target.tagName === "TEXTAREA") { soon(1000); } });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-limit]").forEach(function (area) {
      updateCounter(area);
      area.addEventListener("input", function () { updateCounter(area); });
    });
    document.querySelectorAll("form[data-draft-url]").forEach(function (form) {
      draftSaver(form);
      updateProgress(form);
      stepper(form);
      form.addEventListener("change", function () { updateProgress(form); });
    });
    document.querySelectorAll("[data-check-all]").forEach(function (box) {
      var wrap = box.closest("[hidden]");
      if (wrap) { wrap.hidden = false; }  // only useful with a script: shown by it
      box.addEventListener("change", function () {
        document.querySelectorAll("input[name=claim_id]").forEach(function (c) { c.checked = box.checked; });
      });
    });
  });
})();
