// Run edgeport-web.mjs's pure functions (letterbox, decode, NMS) on cases from a JSON file; print JSON results.
// usage: node check_pure.mjs MODULE_PATH CASES.json
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const web = await import(pathToFileURL(process.argv[2]).href);
const cases = JSON.parse(readFileSync(process.argv[3], "utf8"));
const letterboxes = cases.letterbox.map((c) => {
  const rgb = Buffer.from(c.rgb_b64, "base64");
  const rgba = new Uint8ClampedArray(c.width * c.height * 4);
  for (let i = 0; i < c.width * c.height; i++) {
    rgba[4 * i] = rgb[3 * i]; rgba[4 * i + 1] = rgb[3 * i + 1]; rgba[4 * i + 2] = rgb[3 * i + 2]; rgba[4 * i + 3] = 255;
  }
  const { canvas, place } = web.letterbox(rgba, c.width, c.height, c.size, c.pad, c.interpolation);
  return { canvas_b64: Buffer.from(canvas).toString("base64"), place };
});
const decodes = cases.decode.map((c) => {
  const outputs = {};
  for (const [name, t] of Object.entries(c.outputs)) outputs[name] = { data: Float32Array.from(t.data), dims: t.dims };
  const place = web.placement(c.image_wh[0], c.image_wh[1], c.imgsz[0], c.imgsz[1]);
  return web.postprocess(outputs, { names: c.names, decode: c.decode, imgsz: c.imgsz }, place, c.nms);
});
const halves = cases.halves.map((v) => web.fromHalf(web.toHalf(v)));
process.stdout.write(JSON.stringify({ letterbox: letterboxes, decode: decodes, halves }));
