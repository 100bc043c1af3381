/**
 * The dashboard's only script and stylesheet, served from the bot itself (no build step, no CDN), so the
 * Content-Security-Policy can forbid every inline script and every other origin.
 */

/**
 * Live updates over Server-Sent Events: each `deployment` message carries the deployment's row and detail, rendered
 * and escaped by the server; the page swaps them in. `body[data-live]` says whether the stream is connected. After a
 * lost connection the page reloads once the stream is back, since messages sent meanwhile are gone.
 */
export const LIVE_JS = `"use strict";
(() => {
  const parse = (markup) => {
    const t = document.createElement("template");
    t.innerHTML = markup;
    return t.content.firstElementChild;
  };
  let lost = false;
  const es = new EventSource("/dashboard/events");
  es.addEventListener("ready", () => {
    if (lost) location.reload();
    document.body.dataset.live = "connected";
  });
  es.addEventListener("error", () => {
    lost = true;
    document.body.dataset.live = "reconnecting";
  });
  es.addEventListener("deployment", (e) => {
    const d = JSON.parse(e.data);
    const row = document.getElementById("d-" + d.uuid);
    const list = document.getElementById("deployments");
    if (row) row.replaceWith(parse(d.row));
    else if (list && (!list.dataset.app || list.dataset.app === d.app)) {
      list.prepend(parse(d.row));
      for (const empty of document.querySelectorAll(".deployments + .empty")) empty.remove();
    }
    const detail = document.getElementById("detail-" + d.uuid);
    if (detail) detail.replaceWith(parse(d.detail));
  });
})();
`;

export const STYLE_CSS = `:root { font-family: system-ui, sans-serif; color: #1d1d1f; background: #fafafa; }
body { margin: 0; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #243b2f; color: #fff; }
header strong { color: #f5c518; }
header nav { display: flex; gap: 1rem; flex: 1; }
header a { color: #fff; text-decoration: none; opacity: .85; }
header a[aria-current] { opacity: 1; border-bottom: 2px solid #f5c518; }
header .who { display: flex; gap: .6rem; align-items: center; margin: 0; }
main { padding: 1rem 1.2rem; max-width: 76rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
th { font-weight: 600; font-size: .85rem; color: #555; }
code { font-size: .85rem; } .msg { color: #555; }
pre { background: #111; color: #e8e8e8; padding: .8rem; overflow-x: auto; white-space: pre-wrap; max-height: 30rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dt { color: #555; } dd { margin: 0; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; background: #ddd; }
.badge.succeeded, .badge.allowed { background: #c8efd0; } .badge.failed, .badge.denied { background: #f8c9c9; }
.badge.running { background: #cfe3ff; } .badge.queued, .badge.pending { background: #eee; }
.badge.cancelled, .badge.superseded, .badge.skipped { background: #f1e4c3; }
.stages { display: flex; gap: .2rem; list-style: none; margin: 0; padding: 0; }
.stage { font-size: .72rem; padding: 0 .35rem; border-radius: .3rem; background: #eee; color: #777; }
.stage.running { background: #cfe3ff; color: #0b3d91; } .stage.succeeded { background: #c8efd0; color: #145a24; }
.stage.failed { background: #f8c9c9; color: #8a1010; } .stage.skipped { background: #f1e4c3; color: #6b5514; }
.stage.cancelled { background: #f1e4c3; color: #6b5514; }
.notice { padding: .6rem .8rem; background: #fff6d6; border-left: 4px solid #f5c518; }
.notice.refused, .notice.incident { background: #fde2e2; border-color: #c62828; }
.notice.ok { background: #e1f5e6; border-color: #2e7d32; }
.approval { background: #fff; padding: .6rem 1rem; margin-bottom: .8rem; border: 1px solid #e3e3e3; }
.approval .actions { display: flex; gap: .6rem; } .approval form { margin: 0; }
button, .button { font: inherit; padding: .35rem .9rem; border: 1px solid #888; border-radius: .3rem; background: #fff;
  color: #1d1d1f; cursor: pointer; text-decoration: none; }
button.approved { background: #2e7d32; color: #fff; border-color: #2e7d32; }
button.denied { background: #c62828; color: #fff; border-color: #c62828; }
button[disabled] { opacity: .45; cursor: not-allowed; }
.empty { color: #777; }
`;
