// Open API documentation pages in the system's headless Chromium with the network cut off.
//
//   node check_docs.mjs SCREENSHOT_DIR ALLOWED_ORIGIN URL...
//
// Every request that does not go to ALLOWED_ORIGIN (or file:, data:, blob:) is aborted and
// recorded, as on an air-gapped cluster. For each URL, prints what rendered: Swagger UI's title
// and operations, ReDoc's title and operations, console and page errors, blocked requests, and
// where the screenshot went. Judging is left to the Python test that runs this.
import { chromium } from "playwright-core";
import path from "node:path";

const CHROMIUM = process.env.RMSCORE_CHROMIUM || "/usr/bin/chromium";
const [shotDir, allowed, ...urls] = process.argv.slice(2);
if (!shotDir || !allowed || urls.length === 0) {
  console.error("usage: node check_docs.mjs SCREENSHOT_DIR ALLOWED_ORIGIN URL...");
  process.exit(2);
}
const local = (url) => url.startsWith(allowed) || /^(file|data|blob):/.test(url);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const out = { chromium: browser.version(), pages: [] };
try {
  for (const [i, url] of urls.entries()) {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const seen = { url, console_errors: [], page_errors: [], blocked: [], failed: [] };
    let scriptBlocked = false;
    await context.route("**/*", (route) => {
      const u = route.request().url();
      if (local(u)) return route.continue();
      seen.blocked.push(u);
      if (route.request().resourceType() === "script") scriptBlocked = true;
      return route.abort("internetdisconnected");
    });
    const page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") seen.console_errors.push(m.text());
    });
    page.on("pageerror", (e) => seen.page_errors.push(String(e)));
    page.on("requestfailed", (r) => {
      if (local(r.url())) seen.failed.push(`${r.url()}: ${r.failure()?.errorText}`);
    });
    await page.goto(url, { waitUntil: "load" });
    // Rendered = the spec's operations are on the page (Swagger UI's .opblock, ReDoc's operation headings).
    // A page whose scripts were blocked (the CDN control page) cannot render: 5 s shows it stays
    // blank; waiting out the full 30 s given to a page that can render would prove nothing more.
    seen.rendered = await page
      .waitForFunction(
        () => document.querySelectorAll(".swagger-ui .opblock, [data-section-id^='operation/']").length > 0,
        null,
        { timeout: scriptBlocked ? 5000 : 30000 },
      )
      .then(() => true, () => false);
    Object.assign(
      seen,
      await page.evaluate(() => ({
        swagger_title: document.querySelector(".swagger-ui .info .title")?.innerText ?? null,
        swagger_operations: document.querySelectorAll(".swagger-ui .opblock").length,
        redoc_title: document.querySelector(".api-info h1")?.innerText ?? null,
        redoc_operations: document.querySelectorAll("[data-section-id^='operation/']").length,
        text: document.body.innerText.slice(0, 20000),
      })),
    );
    seen.screenshot = path.join(shotDir, `docs-${i}.png`);
    await page.screenshot({ path: seen.screenshot });
    out.pages.push(seen);
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
