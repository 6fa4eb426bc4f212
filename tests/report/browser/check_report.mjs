// Open HTML files in the system's headless Chromium and tell what a reader would meet there.
//
//   node check_report.mjs SCREENSHOT_DIR FILE...
//
// Prints one JSON object: for each file its console errors, page errors, dialogs (an `alert`
// that ran), network requests (none expected: the report is self-contained), tables, charts
// and the visible text's hints, and where its full-page screenshot went. Judging is left to the
// Python test that runs this.
import { chromium } from "playwright-core";
import path from "node:path";
import { pathToFileURL } from "node:url";

const CHROMIUM = process.env.RMSCORE_CHROMIUM || "/usr/bin/chromium";
const [shotDir, ...files] = process.argv.slice(2);
if (!shotDir || files.length === 0) {
  console.error("usage: node check_report.mjs SCREENSHOT_DIR FILE...");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
const out = { chromium: browser.version(), pages: [] };
try {
  for (const file of files) {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    const seen = { file, console_errors: [], page_errors: [], dialogs: [], requests: [] };
    page.on("console", (m) => {
      if (m.type() === "error") seen.console_errors.push(m.text());
    });
    page.on("pageerror", (e) => seen.page_errors.push(String(e)));
    page.on("dialog", async (d) => {
      seen.dialogs.push(`${d.type()}: ${d.message()}`);
      await d.dismiss();
    });
    page.on("request", (r) => {
      const url = r.url();
      if (!url.startsWith("file:") && !url.startsWith("data:")) seen.requests.push(url);
    });
    const url = pathToFileURL(path.resolve(file)).href;
    await page.goto(url, { waitUntil: "load" });
    Object.assign(
      seen,
      await page.evaluate(() => {
        const visible = (el) => {
          const r = el.getBoundingClientRect();
          return r.width > 0 && r.height > 0;
        };
        const tables = [...document.querySelectorAll("table")].map((t) => ({
          id: t.id,
          rows: t.querySelectorAll("tbody tr").length,
          visible: visible(t),
          // What a reader sees in each body cell, so the test can check the numbers, not the markup.
          cells: [...t.querySelectorAll("tbody tr")].map((tr) => [...tr.cells].map((td) => td.innerText.trim())),
        }));
        const charts = [...document.querySelectorAll("svg")].map((s) => {
          const r = s.getBoundingClientRect();
          return { width: r.width, height: r.height, paths: s.querySelectorAll("path").length };
        });
        return {
          title: document.title,
          tables,
          charts,
          scripts: document.querySelectorAll("script").length,
          text: document.body.innerText,
        };
      }),
    );
    seen.screenshot = path.join(shotDir, path.basename(file).replace(/\.html?$/, "") + ".png");
    await page.screenshot({ path: seen.screenshot, fullPage: true });
    out.pages.push(seen);
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
