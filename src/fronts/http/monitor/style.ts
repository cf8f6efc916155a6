/** The monitor's stylesheet and icon (kept in a module so the compiled server carries them; no build step). */

export const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1f6feb"/><path d="M11 8l13 8-13 8z" fill="#fff"/></svg>`;

export const CSS = `
:root {
  --bg: #f6f8fa; --card: #fff; --border: #d0d7de; --text: #1f2328; --muted: #59636e; --link: #0969da;
  --run: #0969da; --run-bg: #ddf4ff; --queue: #8250df; --queue-bg: #fbefff; --ok: #1a7f37; --ok-bg: #dafbe1;
  --fail: #cf222e; --fail-bg: #ffebe9; --cancel: #59636e; --cancel-bg: #eaeef2; --aband: #bc4c00; --aband-bg: #fff1e5;
  --log-bg: #0d1117; --log-text: #e6edf3; --log-muted: #7d8590; --log-line: #161b22; --focus: #0969da;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  color-scheme: light;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #151b23; --border: #3d444d; --text: #e6edf3; --muted: #9198a1; --link: #4493f8;
    --run: #4493f8; --run-bg: #0c2d6b; --queue: #ab7df8; --queue-bg: #2e1a53; --ok: #3fb950; --ok-bg: #0f3a1d;
    --fail: #f85149; --fail-bg: #4c1419; --cancel: #9198a1; --cancel-bg: #262c36; --aband: #db6d28; --aband-bg: #3d1d07;
    --log-bg: #010409; --log-line: #0d1117; color-scheme: dark;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
a { color: var(--link); text-decoration: none; }
a:hover { text-decoration: underline; }
:focus-visible { outline: 2px solid var(--focus); outline-offset: 2px; border-radius: 3px; }
code, pre, .mono { font-family: var(--mono); font-size: 12.5px; }
h1, h2, h3 { margin: 0; line-height: 1.25; }
.skip { position: absolute; left: -999px; top: 0; background: var(--card); padding: 8px 12px; z-index: 10; }
.skip:focus { left: 8px; top: 8px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
[hidden] { display: none !important; }

.topbar { display: flex; align-items: center; gap: 20px; padding: 10px 24px; background: #1f2328; color: #f0f6fc; }
.topbar a { color: #f0f6fc; }
.brand { font-weight: 650; font-size: 16px; letter-spacing: .2px; display: flex; align-items: center; gap: 8px; }
.brand:hover { text-decoration: none; }
.logo { display: inline-grid; place-items: center; width: 24px; height: 24px; border-radius: 6px; background: #1f6feb; font-size: 11px; }
.topnav a { opacity: .85; } .topnav a:hover { opacity: 1; }
.who { margin-left: auto; display: flex; align-items: center; gap: 14px; font-size: 13px; }
.access { padding: 1px 8px; border-radius: 999px; border: 1px solid #57606a; color: #d1d9e0; }
.access-full { border-color: #2f81f7; color: #c2dcff; }
.link-button { background: none; border: 0; color: #f0f6fc; font: inherit; cursor: pointer; padding: 2px 4px; opacity: .85; }
.link-button:hover { opacity: 1; text-decoration: underline; }
form.inline { display: inline; margin: 0; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 40px; }
main:focus { outline: none; }
.foot { max-width: 1280px; margin: 0 auto; padding: 0 24px 24px; color: var(--muted); font-size: 12px; }
.card { background: var(--card); border: 1px solid var(--border); border-radius: 10px; }
.muted { color: var(--muted); }

.button { display: inline-flex; align-items: center; gap: 6px; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--border);
  background: var(--card); color: var(--text); font: inherit; font-size: 13px; font-weight: 500; cursor: pointer; line-height: 20px; white-space: nowrap; }
.button:hover { text-decoration: none; background: var(--bg); }
.button.primary { background: #1f883d; border-color: #1a7f37; color: #fff; }
.button.primary:hover { background: #1a7f37; }
.button.danger { color: var(--fail); }
.button.danger:hover { background: var(--fail); border-color: var(--fail); color: #fff; }
.button[aria-pressed="true"] { background: var(--run-bg); border-color: var(--run); color: var(--run); }

.status { display: inline-flex; align-items: center; gap: 5px; padding: 1px 9px 1px 7px; border-radius: 999px; font-size: 12.5px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.status .icon { font-size: 11px; }
.st-running .status, .status.st-running { color: var(--run); background: var(--run-bg); }
.status.st-queued { color: var(--queue); background: var(--queue-bg); }
.status.st-succeeded { color: var(--ok); background: var(--ok-bg); }
.status.st-failed { color: var(--fail); background: var(--fail-bg); }
.status.st-cancelled { color: var(--cancel); background: var(--cancel-bg); }
.status.st-abandoned { color: var(--aband); background: var(--aband-bg); }
.status.st-running .icon { animation: pulse 1.4s ease-in-out infinite; }
@keyframes pulse { 50% { opacity: .25; } }
@media (prefers-reduced-motion: reduce) { .status.st-running .icon { animation: none; } }

.page-head { display: flex; align-items: baseline; gap: 14px; margin: 4px 0 14px; }
.page-head h1 { font-size: 22px; }
.live-state { font-size: 12px; color: var(--muted); }
.live-state.on::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%; background: var(--ok); margin-right: 6px; vertical-align: 1px; }
.live-state.off::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%; background: var(--aband); margin-right: 6px; vertical-align: 1px; }
.filters { display: flex; flex-wrap: wrap; align-items: end; gap: 12px; margin-bottom: 18px; }
.filters label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); font-weight: 600; }
.filters select { font: inherit; font-size: 13px; padding: 5px 8px; border-radius: 6px; border: 1px solid var(--border); background: var(--card); color: var(--text); min-width: 160px; }
.filters .clear { font-size: 13px; padding-bottom: 6px; }

.group { margin-bottom: 22px; }
.group h2 { font-size: 14px; font-weight: 650; margin: 0 0 8px; display: flex; align-items: center; gap: 8px; }
.count { font-size: 12px; font-weight: 600; background: var(--cancel-bg); color: var(--muted); border-radius: 999px; padding: 0 8px; }
table.builds { width: 100%; table-layout: fixed; border-collapse: separate; border-spacing: 0; background: var(--card); border: 1px solid var(--border); border-radius: 10px; overflow: hidden; }
.builds th { text-align: left; font-size: 12px; font-weight: 600; color: var(--muted); padding: 8px 12px; border-bottom: 1px solid var(--border); background: var(--bg); }
.builds td { padding: 10px 12px; border-bottom: 1px solid var(--border); vertical-align: top; }
.builds tbody tr:last-child td { border-bottom: 0; }
.builds tbody tr:hover td { background: color-mix(in srgb, var(--bg) 60%, transparent); }
.builds tbody:empty + * { display: none; }
.group table:has(tbody:empty) { display: none; }
.builds .k { display: none; }
/* The same column widths in every group, so the running, queued and recent tables line up. */
.builds th:nth-child(1) { width: 136px; } .builds th:nth-child(2) { width: 24%; } .builds th:nth-child(3) { width: 16%; }
.builds th:nth-child(5) { width: 84px; } .builds th:nth-child(6) { width: 100px; } .builds th:nth-child(7) { width: 104px; }
.c-status { white-space: nowrap; }
.c-build, .c-rev { overflow-wrap: anywhere; }
.c-status .exit { display: block; font-size: 11.5px; color: var(--muted); margin-top: 3px; padding-left: 4px; font-family: var(--mono); }
.svc { font-weight: 600; font-size: 14px; }
.sub { font-size: 12.5px; color: var(--muted); margin-top: 2px; }
.step-now::before { content: "▸ "; color: var(--run); }
.err-msg { color: var(--fail); }
.c-rev code { background: var(--bg); border: 1px solid var(--border); border-radius: 5px; padding: 0 5px; }
.c-rev .sha { color: var(--muted); }
.image { font-family: var(--mono); font-size: 12.5px; word-break: break-all; }
.tags { display: inline-flex; flex-wrap: wrap; gap: 4px; margin-left: 6px; vertical-align: 1px; }
.c-image .tags { display: flex; margin: 4px 0 0; }
.tag { font-size: 11.5px; font-family: var(--mono); padding: 0 6px; border-radius: 999px; background: var(--run-bg); color: var(--run); }
.source { font-size: 12px; padding: 1px 7px; border-radius: 5px; background: var(--cancel-bg); color: var(--muted); font-weight: 600; }
.c-dur, .c-when { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--muted); font-size: 13px; }
.ticking { color: var(--run); font-weight: 600; }
.none { color: var(--muted); background: var(--card); border: 1px dashed var(--border); border-radius: 10px; padding: 18px; text-align: center; margin: 0; }
.more { color: var(--muted); font-size: 13px; }

.empty { padding: 24px 28px; margin-bottom: 20px; }
.empty h2 { font-size: 18px; margin-bottom: 6px; }
.empty h3 { font-size: 13px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.empty pre { background: var(--log-bg); color: var(--log-text); padding: 12px 14px; border-radius: 8px; overflow-x: auto; margin: 0 0 8px; line-height: 1.6; }
.hint { color: var(--muted); font-size: 13px; }

.crumbs { font-size: 13px; color: var(--muted); margin-bottom: 12px; }
.crumbs span:last-child { font-family: var(--mono); font-size: 12px; }
.build-header { padding: 18px 20px 14px; margin-bottom: 16px; border-top: 4px solid var(--border); }
.build-header.st-running { border-top-color: var(--run); } .build-header.st-queued { border-top-color: var(--queue); }
.build-header.st-succeeded { border-top-color: var(--ok); } .build-header.st-failed { border-top-color: var(--fail); }
.build-header.st-cancelled { border-top-color: var(--cancel); } .build-header.st-abandoned { border-top-color: var(--aband); }
.title-row { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; }
.title-row h1 { font-size: 20px; display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
.title-row h1 .svc { font-size: 20px; color: var(--text); }
.build-id { font-family: var(--mono); font-size: 13px; color: var(--muted); font-weight: 400; }
.title-row .status { font-size: 13.5px; padding: 2px 11px 2px 9px; }
.actions { margin-left: auto; display: flex; gap: 8px; flex-wrap: wrap; }
.error-line { margin: 12px 0 0; padding: 8px 12px; border-radius: 6px; background: var(--fail-bg); color: var(--fail); border: 1px solid color-mix(in srgb, var(--fail) 35%, transparent); }
.error-line strong { font-family: var(--mono); font-size: 12px; margin-right: 6px; }
.project { padding: 16px 20px; margin-bottom: 16px; } .project h2 { margin: 0; font-size: 18px; } .project .badge { vertical-align: middle; }
.last-builds { border-collapse: collapse; font-size: 13px; margin: 4px 0 12px; } .last-builds th, .last-builds td { text-align: left; padding: 4px 14px 4px 0; }
.build-form { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-top: 12px; } .topnav a + a { margin-left: 14px; } .build-form input { font: inherit; font-family: var(--mono); padding: 5px 8px; border: 1px solid var(--border); border-radius: 6px; background: var(--bg); color: var(--text); min-width: 220px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px 22px; margin: 16px 0 12px; }
.fact { min-width: 0; } .fact.wide { grid-column: span 2; }
.fact dt { font-size: 11.5px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; }
.fact dd { margin: 2px 0 0; overflow-wrap: anywhere; }
.fact code.ok { color: var(--ok); font-weight: 700; } .fact code.bad { color: var(--fail); font-weight: 700; }
.digest { font-size: 12px; }
.steps-bar { list-style: none; margin: 4px 0 0; padding: 12px 0 0; border-top: 1px solid var(--border); display: flex; flex-wrap: wrap; gap: 6px; }
.chip a { display: inline-flex; align-items: center; gap: 6px; padding: 3px 10px; border-radius: 999px; border: 1px solid var(--border); font-size: 12.5px; color: var(--text); }
.chip a:hover { text-decoration: none; border-color: var(--muted); }
.chip .d { color: var(--muted); font-variant-numeric: tabular-nums; }
.chip.step-ok .icon { color: var(--ok); } .chip.step-failed .icon { color: var(--fail); }
.chip.step-failed a { border-color: var(--fail); background: var(--fail-bg); }
.chip.step-running a { border-color: var(--run); background: var(--run-bg); } .chip.step-running .icon { color: var(--run); animation: pulse 1.4s infinite; }

.log-card { overflow: hidden; background: var(--log-bg); border-color: #30363d; color: var(--log-text); }
.log-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 10px 14px; border-bottom: 1px solid #30363d; background: #161b22; position: sticky; top: 0; z-index: 2; }
.log-toolbar h2 { font-size: 14px; color: #f0f6fc; }
.log-toolbar .live-state { color: var(--log-muted); }
.log-toolbar .button { background: #21262d; border-color: #3d444d; color: #f0f6fc; }
.log-toolbar .button:hover { background: #30363d; }
.log-toolbar .button[aria-pressed="true"] { background: #1f6feb; border-color: #1f6feb; color: #fff; }
.follow { margin-left: auto; }
.seg { display: inline-flex; border: 1px solid #3d444d; border-radius: 6px; overflow: hidden; }
.seg-b { background: #21262d; color: #c9d1d9; border: 0; border-right: 1px solid #3d444d; font: inherit; font-size: 12.5px; padding: 3px 10px; cursor: pointer; }
.seg-b:last-child { border-right: 0; }
.seg-b[aria-pressed="true"] { background: #30363d; color: #fff; font-weight: 600; }
.tail-note { margin: 0; padding: 10px 16px; background: #1c2128; color: #d1d9e0; font-size: 13px; border-bottom: 1px solid #30363d; }
.tail-note a { color: #58a6ff; }
.log { font-family: var(--mono); font-size: 12.5px; line-height: 1.55; padding: 6px 0 10px; min-height: 120px; }
.log .placeholder { color: var(--log-muted); padding: 12px 16px; }
details.step { border-bottom: 1px solid #21262d; }
details.step > summary { list-style: none; display: flex; align-items: center; gap: 10px; padding: 6px 14px; cursor: pointer; user-select: none;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; font-size: 13px; color: #e6edf3; }
details.step > summary::-webkit-details-marker { display: none; }
details.step > summary::before { content: "▸"; color: var(--log-muted); width: 10px; transition: transform .1s; }
details.step[open] > summary::before { transform: rotate(90deg); }
details.step > summary:hover { background: #161b22; }
.s-name { font-weight: 600; }
.s-state { font-size: 12px; display: inline-flex; gap: 4px; align-items: center; }
.s-ok .s-state { color: #3fb950; } .s-failed .s-state { color: #f85149; } .s-running .s-state { color: #58a6ff; }
.s-failed > summary { background: rgba(248, 81, 73, .10); }
.s-dur { margin-left: auto; color: var(--log-muted); font-variant-numeric: tabular-nums; font-size: 12px; }
.s-lines { color: var(--log-muted); font-size: 12px; }
.skipped { color: var(--log-muted); padding: 2px 16px 6px 62px; font-style: italic; }
.line { display: flex; padding: 0 14px 0 0; min-height: 19px; }
.line:hover { background: var(--log-line); }
.ln { flex: none; width: 62px; padding-right: 14px; text-align: right; color: #6e7681; user-select: none; font-variant-numeric: tabular-nums; }
.ln:hover { color: #c9d1d9; text-decoration: none; }
.txt { flex: 1; min-width: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.line.err { background: rgba(248, 81, 73, .07); box-shadow: inset 3px 0 0 #f85149; }
.line.err .ln { color: #f0868080; }
.line.err .ln::after { content: ""; }
.line.target, .line:target { background: rgba(210, 153, 34, .22) !important; box-shadow: inset 3px 0 0 #d29922; }
.log.only-stdout .line.err, .log.only-stderr .line:not(.err) { display: none; }
.cut-line { color: #d29922; padding: 6px 16px 6px 62px; }
.cut-note { color: var(--log-muted); font-style: italic; }
.exit-line { margin: 8px 14px 0 62px; padding: 6px 10px; border-radius: 6px; font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 13px; display: inline-block; }
.exit-line.ok { background: rgba(63, 185, 80, .15); color: #3fb950; } .exit-line.bad { background: rgba(248, 81, 73, .15); color: #ff7b72; }

/* ANSI colours tuned for the dark log (ansi_up's class names). */
.ansi-black-fg { color: #6e7681; } .ansi-red-fg { color: #ff7b72; } .ansi-green-fg { color: #3fb950; } .ansi-yellow-fg { color: #d29922; }
.ansi-blue-fg { color: #58a6ff; } .ansi-magenta-fg { color: #bc8cff; } .ansi-cyan-fg { color: #39c5cf; } .ansi-white-fg { color: #e6edf3; }
.ansi-bright-black-fg { color: #8b949e; } .ansi-bright-red-fg { color: #ffa198; } .ansi-bright-green-fg { color: #56d364; } .ansi-bright-yellow-fg { color: #e3b341; }
.ansi-bright-blue-fg { color: #79c0ff; } .ansi-bright-magenta-fg { color: #d2a8ff; } .ansi-bright-cyan-fg { color: #56d4dd; } .ansi-bright-white-fg { color: #fff; }
.ansi-black-bg { background: #484f58; } .ansi-red-bg { background: #b62324; } .ansi-green-bg { background: #238636; } .ansi-yellow-bg { background: #9e6a03; }
.ansi-blue-bg { background: #1f6feb; } .ansi-magenta-bg { background: #8957e5; } .ansi-cyan-bg { background: #1b7c83; } .ansi-white-bg { background: #b1bac4; color: #0d1117; }
.ansi-bright-black-bg { background: #6e7681; } .ansi-bright-red-bg { background: #da3633; } .ansi-bright-green-bg { background: #2ea043; } .ansi-bright-yellow-bg { background: #bb8009; }
.ansi-bright-blue-bg { background: #388bfd; } .ansi-bright-magenta-bg { background: #a371f7; } .ansi-bright-cyan-bg { background: #2b9aa0; } .ansi-bright-white-bg { background: #f0f6fc; color: #0d1117; }

.signin { max-width: 440px; margin: 48px auto; padding: 28px; }
.signin h1 { font-size: 22px; margin-bottom: 10px; }
.signin p { color: var(--muted); }
.signin label { display: block; font-weight: 600; margin: 18px 0 6px; }
.signin input[type=password] { width: 100%; font: inherit; font-family: var(--mono); padding: 8px 10px; border: 1px solid var(--border); border-radius: 6px; background: var(--bg); color: var(--text); }
.signin .button { margin-top: 14px; width: 100%; justify-content: center; padding: 8px; font-size: 14px; }
.problem { max-width: 640px; margin: 40px auto; padding: 28px; }
.problem h1 { font-size: 20px; margin-bottom: 8px; }

.on-engine { font-size: 12px; color: var(--muted); white-space: nowrap; } .on-engine .engine-name, .fact .engine-name { font-family: var(--mono); font-size: 12.5px; }
.engines { margin: 0 0 16px; }
.engine-list { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 10px; }
.engine-card { display: flex; align-items: center; gap: 10px; padding: 7px 12px; }
.engine-card .engine-name { font-family: var(--mono); font-weight: 650; }
.e-dot { width: 9px; height: 9px; border-radius: 50%; background: var(--ok); flex: none; }
.e-down .e-dot { background: var(--fail); } .e-draining .e-dot { background: var(--aband); }
.e-state { font-size: 12px; font-weight: 600; color: var(--ok); } .e-down .e-state { color: var(--fail); } .e-draining .e-state { color: var(--aband); }
.e-load { font-size: 12.5px; color: var(--muted); }
.button.small { padding: 2px 9px; font-size: 12px; line-height: 18px; }
@media (max-width: 760px) {
  main { padding: 14px 12px 32px; }
  .topbar { padding: 10px 12px; gap: 12px; }
  table.builds, .builds tbody, .builds tr, .builds td { display: block; width: 100%; }
  table.builds { border: 0; background: none; }
  .builds thead { display: none; }
  .builds tr.build { background: var(--card); border: 1px solid var(--border); border-radius: 10px; margin-bottom: 10px; padding: 10px 12px;
    display: grid; grid-template-columns: auto 1fr; gap: 4px 12px; }
  .builds td { padding: 0; border: 0 !important; }
  .builds .c-status { grid-column: 1; } .builds .c-build { grid-column: 2; }
  .builds .c-rev, .builds .c-image, .builds .c-source, .builds .c-dur, .builds .c-when { grid-column: 1 / -1; font-size: 12.5px; }
  .builds .k { display: inline-block; min-width: 74px; color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .3px; }
  .c-image .tags { display: inline-flex; margin-left: 6px; }
  .c-when { order: 9; }
  .actions { margin-left: 0; width: 100%; }
  .fact.wide { grid-column: auto; }
  .facts { grid-template-columns: 1fr 1fr; }
  .ln { width: 44px; padding-right: 8px; }
  .skipped, .cut-line { padding-left: 44px; }
  .exit-line { margin-left: 44px; }
  .follow { margin-left: 0; }
}
`;
