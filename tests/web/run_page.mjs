// Drive an edgeport onnx-web page in headless Chromium (playwright-core) and print JSON results.
//
// usage: node run_page.mjs '{"page": URL, "images": [URL...], "benchmark": {"runs": 30, "warmup": 5}, "webgpu": false,
//                              "pixels": false, "ui": {"file": LOCAL_IMAGE_PATH}}'
// Prints {"info": ..., "results": [...], "benchmark": ...}; a page error ends with exit status 1.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");
const config = JSON.parse(process.argv[2]);
const profile = mkdtempSync(join(tmpdir(), "edgeport-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium || "/usr/bin/chromium",
  headless: true,
  // webgpu: Chromium's software WebGPU adapter (SwiftShader) instead of no GPU at all
  args: ["--no-sandbox", ...(config.webgpu ? ["--enable-unsafe-webgpu"] : ["--disable-gpu"]), "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         // a synthetic camera (Chromium's test pattern) and no permission prompt, for the webcam button
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
let status = 0;
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (message) => logs.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => logs.push(`pageerror: ${error.message}`));
  await page.goto(config.page);
  const info = await page.evaluate(() => window.edgeport.ready);
  const results = [];
  for (const image of config.images || []) {
    const result = await page.evaluate((url) => window.edgeport.detect(url), image);
    if (config.pixels) {  // the decoded RGB pixels (EXIF applied), to compare with the Python decoder
      result.rgb_b64 = await page.evaluate(async (url) => {
        const { readPixels } = await import("./edgeport-web.mjs");
        const { rgba } = await readPixels(url);
        const chunks = [];
        for (let i = 0; i < rgba.length; i += 4 * 8192) {
          const part = rgba.subarray(i, i + 4 * 8192);
          let text = "";
          for (let j = 0; j < part.length; j += 4) text += String.fromCharCode(part[j], part[j + 1], part[j + 2]);
          chunks.push(text);
        }
        return btoa(chunks.join(""));
      }, image);
    }
    results.push(result);
  }
  const benchmark = config.benchmark
    ? await page.evaluate(([url, options]) => window.edgeport.benchmark(url, options), [config.images[0], config.benchmark])
    : null;
  let ui = null;
  if (config.ui) {  // the page as a user drives it: pick a file, then run the webcam for a few frames
    await page.setInputFiles("#file", config.ui.file);
    await page.waitForFunction(() => document.getElementById("latency").textContent.includes("inference"));
    const fileLatency = await page.textContent("#latency");
    const canvas = await page.evaluate(() => [document.getElementById("view").width, document.getElementById("view").height]);
    await page.evaluate(() => { window.edgeportFrames = []; new MutationObserver(() =>
      window.edgeportFrames.push(document.getElementById("latency").textContent)).observe(
      document.getElementById("latency"), { childList: true, characterData: true, subtree: true }); });
    await page.click("#webcam");
    await page.waitForFunction(() => window.edgeportFrames.length >= 3, null, { timeout: 60000 });
    await page.click("#webcam");
    const frames = await page.evaluate(() => window.edgeportFrames);
    const video = await page.evaluate(() => [document.getElementById("view").width, document.getElementById("view").height]);
    ui = { fileLatency, canvas, frames, video, button: await page.textContent("#webcam") };
  }
  const [isolated, userAgent] = await page.evaluate(() => [crossOriginIsolated, navigator.userAgent]);
  process.stdout.write(JSON.stringify({ info, crossOriginIsolated: isolated, userAgent, results, benchmark, ui, logs }));
} catch (error) {
  process.stderr.write(`run_page: ${error.message}\n`);
  status = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
