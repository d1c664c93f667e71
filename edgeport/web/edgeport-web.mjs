// edgeport-web.mjs: edgeport's runtime pipeline in the browser, on onnxruntime-web.
//
// decode (EXIF orientation applied) -> RGB -> letterbox (OpenCV's area / bilinear resize, re-implemented)
// -> input tensor -> onnxruntime-web -> dequantize -> decode boxes -> class-aware NMS -> original pixels.
// Each step follows edgeport/runtime/ (preprocess.py, postprocess.py) line for line. The pure functions
// are exported (Node can import this file); the page part runs only when a document loads it.

const DEFAULT_NMS = { conf: 0.25, iou: 0.45, maxDet: 300, multiLabel: false, agnostic: false, maxCandidates: 30000 };

// ---- letterbox (edgeport/runtime/preprocess.py) ------------------------------------------------

/** Python's round(): half to even. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Where an image of srcW x srcH lands on the model canvas: {newW, newH, left, top, right, bottom, scaleX, scaleY}. */
export function placement(srcW, srcH, dstH, dstW) {
  const ratio = Math.min(dstH / srcH, dstW / srcW);
  const newW = Math.max(1, Math.min(dstW, roundHalfEven(srcW * ratio)));
  const newH = Math.max(1, Math.min(dstH, roundHalfEven(srcH * ratio)));
  const top = roundHalfEven((dstH - newH) / 2 - 0.1);
  const left = roundHalfEven((dstW - newW) / 2 - 0.1);
  return { ratio, newW, newH, left, top, scaleX: newW / srcW, scaleY: newH / srcH, srcW, srcH };
}

/** OpenCV's area-resize table for one axis: {start, index, weight} flat (output d uses start[d]..start[d+1]). */
function areaTable(ssize, dsize) {
  const scale = ssize / dsize;
  const index = [], weight = [], start = new Int32Array(dsize + 1);
  for (let d = 0; d < dsize; d++) {
    const fs1 = d * scale, fs2 = fs1 + scale;
    const cell = Math.min(scale, ssize - fs1);
    let s1 = Math.ceil(fs1), s2 = Math.floor(fs2);
    s2 = Math.min(s2, ssize - 1);
    s1 = Math.min(s1, s2);
    if (s1 - fs1 > 1e-3) { index.push(s1 - 1); weight.push((s1 - fs1) / cell); }
    for (let s = s1; s < s2; s++) { index.push(s); weight.push(1 / cell); }
    if (fs2 - s2 > 1e-3) { index.push(s2); weight.push(Math.min(Math.min(fs2 - s2, 1), cell) / cell); }
    start[d + 1] = index.length;
  }
  return { start, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/** OpenCV's bilinear table for one axis (half-pixel centres, edge clamped): [s0, s1, w0, w1], 11-bit weights. */
function linearTable(ssize, dsize) {
  const scale = ssize / dsize;
  const table = [];
  for (let d = 0; d < dsize; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = Math.fround(f - s);
    if (s < 0) { f = 0; s = 0; }
    if (s >= ssize - 1) { f = 0; s = ssize - 1; }
    const w0 = Math.round(Math.fround((1 - f) * 2048));
    table.push([s, Math.min(s + 1, ssize - 1), w0, 2048 - w0]);
  }
  return table;
}

/** cv2.resize INTER_LINEAR on 8-bit RGBA -> RGB, in OpenCV's fixed point (11-bit weights, its SIMD rounding). */
function resizeLinearRGB(rgba, sw, sh, dw, dh) {
  const xs = linearTable(sw, dw), ys = linearTable(sh, dh);
  const rows = new Int32Array(sh * dw * 3);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < dw; x++) {
      const [s0, s1, a0, a1] = xs[x], p0 = (y * sw + s0) * 4, p1 = (y * sw + s1) * 4, q = (y * dw + x) * 3;
      for (let c = 0; c < 3; c++) rows[q + c] = rgba[p0 + c] * a0 + rgba[p1 + c] * a1;
    }
  }
  const out = new Uint8Array(dw * dh * 3);
  for (let y = 0; y < dh; y++) {
    const [r0, r1, b0, b1] = ys[y];
    for (let i = 0; i < dw * 3; i++) {
      const v = (((b0 * (rows[r0 * dw * 3 + i] >> 4)) >> 16) + ((b1 * (rows[r1 * dw * 3 + i] >> 4)) >> 16) + 2) >> 2;
      out[y * dw * 3 + i] = Math.min(255, Math.max(0, v));
    }
  }
  return out;
}

/**
 * Resize RGBA pixels (Uint8ClampedArray, sw x sh) to RGB (Uint8Array, dw x dh) as cv2.resize does:
 * "area" (INTER_AREA, float weights as OpenCV's general path) or "linear" (INTER_LINEAR, OpenCV's fixed
 * point). Results agree with OpenCV within 1 grey level on rounding ties.
 */
export function resizeRGB(rgba, sw, sh, dw, dh, how) {
  const out = new Uint8Array(dw * dh * 3);
  if (sw === dw && sh === dh) {
    for (let i = 0, j = 0; i < sw * sh; i++) { out[j++] = rgba[4 * i]; out[j++] = rgba[4 * i + 1]; out[j++] = rgba[4 * i + 2]; }
    return out;
  }
  if (how !== "area") return resizeLinearRGB(rgba, sw, sh, dw, dh);
  const xs = areaTable(sw, dw), ys = areaTable(sh, dh);
  // separable: horizontal pass into a float buffer per source row, then vertical
  const rows = new Float64Array(sh * dw * 3);
  for (let y = 0; y < sh; y++) {
    const base = y * sw * 4;
    for (let x = 0; x < dw; x++) {
      let r = 0, g = 0, b = 0;
      for (let k = xs.start[x]; k < xs.start[x + 1]; k++) {
        const p = base + xs.index[k] * 4, w = xs.weight[k];
        r += rgba[p] * w; g += rgba[p + 1] * w; b += rgba[p + 2] * w;
      }
      const q = (y * dw + x) * 3;
      rows[q] = r; rows[q + 1] = g; rows[q + 2] = b;
    }
  }
  const line = dw * 3, acc = new Float64Array(line);
  for (let y = 0; y < dh; y++) {
    acc.fill(0);
    for (let k = ys.start[y]; k < ys.start[y + 1]; k++) {
      const offset = ys.index[k] * line, w = ys.weight[k];
      for (let i = 0; i < line; i++) acc[i] += rows[offset + i] * w;
    }
    const o = y * line;
    for (let i = 0; i < line; i++) out[o + i] = Math.min(255, Math.round(acc[i]));
  }
  return out;
}

/**
 * Letterbox RGBA pixels to the model size (preprocess.letterbox): area when shrinking with interpolation
 * "area", bilinear otherwise; centred, padded with padValue. Returns {canvas: Uint8Array H*W*3, place}.
 */
export function letterbox(rgba, width, height, sizeHW, padValue = 114, interpolation = "area") {
  const [H, W] = sizeHW;
  const place = placement(width, height, H, W);
  const how = place.ratio < 1 && interpolation === "area" ? "area" : "linear";
  const resized = resizeRGB(rgba, width, height, place.newW, place.newH, how);
  const canvas = new Uint8Array(H * W * 3).fill(padValue);
  for (let y = 0; y < place.newH; y++) {
    canvas.set(resized.subarray(y * place.newW * 3, (y + 1) * place.newW * 3), ((y + place.top) * W + place.left) * 3);
  }
  return { canvas, place };
}

// ---- float16 helpers (fp16 models for WebGPU) -------------------------------------------------

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, round to nearest even. */
export function toHalf(value) {
  f32[0] = value;
  const x = u32[0], sign = (x >>> 16) & 0x8000, exp = (x >>> 23) & 0xff, mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (mant | 0x800000) >>> (1 - e + 13), rest = (mant | 0x800000) & ((1 << (1 - e + 13)) - 1), half = 1 << (1 - e + 12);
    return sign | (m + (rest > half || (rest === half && (m & 1)) ? 1 : 0));
  }
  const m = mant >>> 13, rest = mant & 0x1fff;
  return (sign | (e << 10) | m) + (rest > 0x1000 || (rest === 0x1000 && (m & 1)) ? 1 : 0);
}

/** IEEE half bits -> number. */
export function fromHalf(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---- input tensor (preprocess.to_input_tensor) -----------------------------------------------

/** Canvas (H*W*3 uint8 RGB) -> {type, data} for the model input described by `spec` (a record TensorSpec). */
export function inputTensorData(canvas, H, W, spec, layout, scale) {
  const n = H * W;
  const q = spec.quantization;
  const value = (v) => Math.fround(v * Math.fround(scale));
  let out, type, convert;
  if (q && q.scale > 0 && (spec.dtype === "uint8" || spec.dtype === "int8")) {
    const [lo, hi] = spec.dtype === "uint8" ? [0, 255] : [-128, 127];
    out = spec.dtype === "uint8" ? new Uint8Array(3 * n) : new Int8Array(3 * n);
    type = spec.dtype;
    convert = (v) => Math.min(hi, Math.max(lo, roundHalfEven(value(v) / q.scale) + q.zero_point));
  } else if (spec.dtype === "uint8") {
    out = new Uint8Array(3 * n); type = "uint8"; convert = (v) => v;
  } else if (spec.dtype === "float16") {
    out = new Uint16Array(3 * n); type = "float16"; convert = (v) => toHalf(value(v));
  } else {
    out = new Float32Array(3 * n); type = "float32"; convert = value;
  }
  if (type === "float32" && layout === "NCHW") {
    const s = Math.fround(scale);
    for (let i = 0; i < n; i++) {
      out[i] = canvas[3 * i] * s; out[n + i] = canvas[3 * i + 1] * s; out[2 * n + i] = canvas[3 * i + 2] * s;
    }
  } else if (layout === "NCHW") {
    for (let i = 0; i < n; i++) {
      out[i] = convert(canvas[3 * i]); out[n + i] = convert(canvas[3 * i + 1]); out[2 * n + i] = convert(canvas[3 * i + 2]);
    }
  } else {
    for (let i = 0; i < 3 * n; i++) out[i] = convert(canvas[i]);
  }
  return { type, data: out, dims: layout === "NCHW" ? [1, 3, H, W] : [1, H, W, 3] };
}

// ---- outputs (postprocess.py) -----------------------------------------------------------------

/** Float32Array of an output tensor's values, dequantized with the record's spec ((q - zp) * scale). */
export function dequantize(data, type, spec) {
  let values;
  if (type === "float16") {
    values = data instanceof Uint16Array ? Float32Array.from(data, fromHalf) : Float32Array.from(data);
  } else {
    values = data instanceof Float32Array ? data : Float32Array.from(data);
  }
  const q = spec && spec.quantization;
  if (q && q.scale > 0 && ["uint8", "int8", "int16"].includes(spec.dtype)) {
    const s = Math.fround(q.scale), z = q.zero_point;
    values = Float32Array.from(values, (v) => Math.fround((v - z) * s));
  }
  return values;
}

/**
 * Decode float outputs ({name: {data: Float32Array, dims}}) of one image: decode kinds "split",
 * "ultralytics" and "dfl" as postprocess.decode_outputs. Returns {boxes: Float32Array N*4 xyxy in
 * model-input pixels, scores: Float32Array N*nc, count: N}.
 */
export function decodeOutputs(outputs, decode, nc, sizeHW, minScore = null) {
  if (decode.kind === "dfl") return decodeDfl(outputs, decode, nc, minScore);
  const [H, W] = sizeHW;
  let count, boxAt, scores;
  if (decode.kind === "split") {
    const b = outputs[decode.boxes], s = outputs[decode.scores];
    count = b.dims[1];
    boxAt = (i, k) => b.data[i * 4 + k];
    scores = s.data;
  } else if (decode.kind === "ultralytics") {
    const raw = outputs[decode.boxes];
    const anchorsLast = !(raw.dims[1] !== 4 + nc && raw.dims[2] === 4 + nc);  // (1, 4+nc, N) else (1, N, 4+nc)
    count = anchorsLast ? raw.dims[2] : raw.dims[1];
    const at = anchorsLast ? (i, c) => raw.data[c * count + i] : (i, c) => raw.data[i * (4 + nc) + c];
    boxAt = (i, k) => at(i, k);
    scores = new Float32Array(count * nc);
    for (let i = 0; i < count; i++) for (let c = 0; c < nc; c++) scores[i * nc + c] = at(i, 4 + c);
  } else {
    throw new Error(`unknown decode kind ${decode.kind}`);
  }
  const boxes = new Float32Array(count * 4);
  const mul = decode.normalized ? [W, H, W, H] : [1, 1, 1, 1];
  for (let i = 0; i < count; i++) {
    let x1 = boxAt(i, 0), y1 = boxAt(i, 1), x2 = boxAt(i, 2), y2 = boxAt(i, 3);
    if (decode.box_format === "xywh") {
      const hw = Math.fround(x2 / 2), hh = Math.fround(y2 / 2);
      [x1, y1, x2, y2] = [Math.fround(x1 - hw), Math.fround(y1 - hh), Math.fround(x1 + hw), Math.fround(y1 + hh)];
    }
    boxes[i * 4] = x1 * mul[0]; boxes[i * 4 + 1] = y1 * mul[1]; boxes[i * 4 + 2] = x2 * mul[2]; boxes[i * 4 + 3] = y2 * mul[3];
  }
  return { boxes, scores, count };
}

/** Raw per-level DFL head -> boxes and sigmoid scores (postprocess.decode_dfl), only where a score can pass. */
function decodeDfl(outputs, decode, nc, minScore) {
  const regMax = decode.reg_max;
  let total = 0;
  for (const level of decode.levels) total += outputs[level.box].dims[1];
  const boxes = new Float32Array(total * 4), scores = new Float32Array(total * nc);
  let offset = 0;
  for (const level of decode.levels) {
    const logits = outputs[level.box].data, cls = outputs[level.cls].data;
    const count = outputs[level.box].dims[1], gridW = level.grid[1], stride = level.stride;
    for (let a = 0; a < count; a++) {
      let best = -Infinity;
      for (let c = 0; c < nc; c++) {
        const s = Math.fround(1 / (1 + Math.exp(-cls[a * nc + c])));
        scores[(offset + a) * nc + c] = s;
        best = Math.max(best, s);
      }
      if (minScore !== null && !(best > minScore)) continue;
      const cx = ((a % gridW) + 0.5) * stride, cy = (Math.floor(a / gridW) + 0.5) * stride;
      const dist = [0, 0, 0, 0];
      for (let side = 0; side < 4; side++) {
        const base = a * 4 * regMax + side * regMax;
        if (regMax === 1) { dist[side] = logits[base] * stride; continue; }  // no DFL (YOLO26): the distances
        let max = -Infinity;
        for (let k = 0; k < regMax; k++) max = Math.max(max, logits[base + k]);
        let sum = 0, expect = 0;
        for (let k = 0; k < regMax; k++) { const w = Math.exp(logits[base + k] - max); sum += w; expect += w * k; }
        dist[side] = (expect / sum) * stride;
      }
      const o = (offset + a) * 4;
      boxes[o] = cx - dist[0]; boxes[o + 1] = cy - dist[1]; boxes[o + 2] = cx + dist[2]; boxes[o + 3] = cy + dist[3];
    }
    offset += count;
  }
  return { boxes, scores, count: total };
}

/** Greedy NMS over candidates (indices into xyxy/score), best score first; returns kept candidate positions. */
export function nms(xyxy, score, iouThreshold, maxDet) {
  const n = score.length;
  let order = Array.from({ length: n }, (_, i) => i).sort((a, b) => score[b] - score[a] || a - b);
  const area = (i) => Math.max(xyxy[4 * i + 2] - xyxy[4 * i], 0) * Math.max(xyxy[4 * i + 3] - xyxy[4 * i + 1], 0);
  const keep = [];
  while (order.length && keep.length < maxDet) {
    const best = order[0];
    keep.push(best);
    const rest = [];
    const areaBest = area(best);
    for (let k = 1; k < order.length; k++) {
      const j = order[k];
      const w = Math.max(Math.min(xyxy[4 * best + 2], xyxy[4 * j + 2]) - Math.max(xyxy[4 * best], xyxy[4 * j]), 0);
      const h = Math.max(Math.min(xyxy[4 * best + 3], xyxy[4 * j + 3]) - Math.max(xyxy[4 * best + 1], xyxy[4 * j + 1]), 0);
      const inter = w * h;
      if (inter / (areaBest + area(j) - inter + 1e-9) <= iouThreshold) rest.push(j);
    }
    order = rest;
  }
  return keep;
}

/**
 * Confidence filter then class-aware NMS for one image (postprocess.select_and_nms).
 * boxes: Float32Array N*4, scores: Float32Array N*nc. Returns {xyxy: number[][], score: number[], classId: number[]}.
 */
export function selectAndNms(boxes, scores, count, nc, options = {}) {
  const { conf, iou, maxDet, multiLabel, agnostic, maxCandidates } = { ...DEFAULT_NMS, ...options };
  let index = [], classId = [], score = [];
  for (let i = 0; i < count; i++) {
    if (multiLabel) {
      for (let c = 0; c < nc; c++) {
        if (scores[i * nc + c] > conf) { index.push(i); classId.push(c); score.push(scores[i * nc + c]); }
      }
    } else {
      let best = 0;
      for (let c = 1; c < nc; c++) if (scores[i * nc + c] > scores[i * nc + best]) best = c;
      if (scores[i * nc + best] > conf) { index.push(i); classId.push(best); score.push(scores[i * nc + best]); }
    }
  }
  if (score.length > maxCandidates) {
    const top = score.map((s, k) => k).sort((a, b) => score[b] - score[a] || a - b).slice(0, maxCandidates).sort((a, b) => a - b);
    index = top.map((k) => index[k]); classId = top.map((k) => classId[k]); score = top.map((k) => score[k]);
  }
  if (!score.length) return { xyxy: [], score: [], classId: [] };
  const xyxy = new Float32Array(score.length * 4);
  let maxAbs = 0;
  index.forEach((i, k) => {
    for (let j = 0; j < 4; j++) { xyxy[4 * k + j] = boxes[4 * i + j]; maxAbs = Math.max(maxAbs, Math.abs(boxes[4 * i + j])); }
  });
  // offset boxes per class so that boxes of different classes never overlap (class-aware NMS)
  const shifted = new Float32Array(xyxy.length);
  const step = agnostic ? 0 : Math.fround((Math.fround(maxAbs) + 1) * 2);
  for (let k = 0; k < score.length; k++) for (let j = 0; j < 4; j++) shifted[4 * k + j] = xyxy[4 * k + j] + Math.fround(classId[k] * step);
  const keep = nms(shifted, score, iou, maxDet);
  return {
    xyxy: keep.map((k) => Array.from(xyxy.subarray(4 * k, 4 * k + 4))),
    score: keep.map((k) => score[k]),
    classId: keep.map((k) => classId[k]),
  };
}

/**
 * One-to-one (NMS-free) heads: the maxDet anchors of best score, then the maxDet best (anchor, class)
 * pairs above conf, no NMS (postprocess.select_topk).
 */
export function selectTopk(boxes, scores, count, nc, options = {}) {
  const { conf, maxDet } = { ...DEFAULT_NMS, ...options };
  let anchors = [];
  const best = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let b = -Infinity;
    for (let c = 0; c < nc; c++) b = Math.max(b, scores[i * nc + c]);
    best[i] = b;
    if (b > conf) anchors.push(i);
  }
  if (anchors.length > maxDet) anchors = anchors.sort((a, b) => best[b] - best[a] || a - b).slice(0, maxDet).sort((a, b) => a - b);
  const pairs = [];
  for (const i of anchors) for (let c = 0; c < nc; c++) if (scores[i * nc + c] > conf) pairs.push([i, c, scores[i * nc + c]]);
  pairs.sort((a, b) => b[2] - a[2]);
  const kept = pairs.slice(0, maxDet);
  return {
    xyxy: kept.map(([i]) => Array.from(boxes.subarray(4 * i, 4 * i + 4))),
    score: kept.map((p) => p[2]),
    classId: kept.map((p) => p[1]),
  };
}

/** Boxes in model-input pixels -> original image pixels, clipped to the image (Letterbox.to_original). */
export function toOriginal(xyxy, place) {
  return xyxy.map(([x1, y1, x2, y2]) => {
    const fx = (v) => Math.min(place.srcW, Math.max(0, Math.fround(Math.fround(v - place.left) / Math.fround(place.scaleX))));
    const fy = (v) => Math.min(place.srcH, Math.max(0, Math.fround(Math.fround(v - place.top) / Math.fround(place.scaleY))));
    return [fx(x1), fy(y1), fx(x2), fy(y2)];
  });
}

/** Detections as Detections.to_dict() writes them: {image_hw, detections: [{xyxy, score, class_id, class_name}]}. */
export function postprocess(outputs, record, place, nmsOptions = {}) {
  const opts = { ...DEFAULT_NMS, ...nmsOptions };
  const nc = record.names.length;
  const { boxes, scores, count } = decodeOutputs(outputs, record.decode, nc, record.imgsz, opts.conf);
  const kept = record.decode.nms === false ? selectTopk(boxes, scores, count, nc, opts)
    : selectAndNms(boxes, scores, count, nc, opts);
  const xyxy = toOriginal(kept.xyxy, place);
  return {
    image_hw: [place.srcH, place.srcW],
    detections: xyxy.map((box, k) => ({
      xyxy: box, score: kept.score[k], class_id: kept.classId[k], class_name: record.names[kept.classId[k]] ?? String(kept.classId[k]),
    })).filter(({ xyxy: [x1, y1, x2, y2] }) => x2 > x1 && y2 > y1),  // a box wholly off the image is none (as Python)
  };
}

// ---- the detector on onnxruntime-web ----------------------------------------------------------

const percentile = (values, p) => {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * p / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);  // numpy's default (linear) percentile
};

/** Decode an image source to {rgba, width, height}; EXIF orientation applied (imageOrientation "from-image"). */
export async function readPixels(source) {
  let bitmap = source, owned = false;
  if (typeof source === "string" || source instanceof URL) {
    const response = await fetch(source);
    if (!response.ok) throw new Error(`cannot fetch ${source}: HTTP ${response.status}`);
    source = await response.blob();
  }
  if (source instanceof Blob || (typeof ImageData !== "undefined" && source instanceof ImageData) ||
      (typeof HTMLImageElement !== "undefined" && source instanceof HTMLImageElement) ||
      (typeof HTMLVideoElement !== "undefined" && source instanceof HTMLVideoElement) ||
      (typeof HTMLCanvasElement !== "undefined" && source instanceof HTMLCanvasElement)) {
    // colorSpaceConversion none: pixels as decoded, like OpenCV (no ICC transform)
    bitmap = await createImageBitmap(source, { imageOrientation: "from-image", colorSpaceConversion: "none",
                                               premultiplyAlpha: "none" });
    owned = true;
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, width, height).data;
  if (owned) bitmap.close();
  return { rgba, width, height };
}

async function loadOrt(backend, base) {
  const file = backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs";
  try {
    return await import(new URL(file, base).href);
  } catch (error) {
    const hint = backend === "webgpu" ? " (the converter copies the WebGPU build with --fp16)" : "";
    throw new Error(`cannot load onnxruntime-web's ${backend} build ${file} from this folder${hint}: ${error.message}`);
  }
}

/** Choose {model, backend}: fp16 on WebGPU with shader-f16, else int8, else fp32 on WASM (or as asked). */
async function chooseModel(manifest, wanted) {
  const models = manifest.models;
  if (wanted.model) {
    const model = models.find((m) => m.file === wanted.model || m.precision === wanted.model);
    if (!model) throw new Error(`model ${wanted.model} is not in this folder (${models.map((m) => m.file).join(", ")})`);
    return { model, backend: wanted.backend || model.backend };
  }
  let webgpu = false, f16 = false;
  if (wanted.backend !== "wasm" && typeof navigator !== "undefined" && navigator.gpu) {
    const adapter = await navigator.gpu.requestAdapter().catch(() => null);
    webgpu = !!adapter;
    f16 = !!adapter && adapter.features.has("shader-f16");
  }
  const fp16 = models.find((m) => m.precision === "fp16");
  if (webgpu && f16 && fp16 && wanted.backend !== "wasm") return { model: fp16, backend: "webgpu" };
  const cpu = models.find((m) => m.precision === "int8") || models.find((m) => m.precision === "fp32");
  if (wanted.backend === "webgpu" && webgpu) {
    const fp32 = models.find((m) => m.precision === "fp32");  // WebGPU has no integer conv kernels
    if (fp32) return { model: fp32, backend: "webgpu" };
  }
  if (!cpu) throw new Error("this folder holds only an fp16 model, which needs WebGPU with shader-f16; "
                            + "convert again without --fp16 (or with --int8) for the WASM backend");
  return { model: cpu, backend: "wasm" };
}

export class EdgeportDetector {
  /** Open the model of a web folder (base URL of edgeport-web.json). options: {backend, model, format, threads, nms}. */
  static async open(base, options = {}) {
    const manifest = await (await fetch(new URL("edgeport-web.json", base))).json();
    const { model, backend } = await chooseModel(manifest, options);
    const record = await (await fetch(new URL(model.record, base))).json();
    const ort = await loadOrt(backend, base);
    const isolated = typeof crossOriginIsolated !== "undefined" && crossOriginIsolated;
    // wasm threads need SharedArrayBuffer, i.e. a cross-origin isolated page (COOP + COEP headers)
    const threads = isolated ? (options.threads || Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = new URL("./", base).href;
    const file = options.format === "ort" ? model.ort_file : model.file;
    if (!file) throw new Error(`${model.file} has no .ort version here; convert with --ort-format`);
    const session = await ort.InferenceSession.create(new URL(file, base).href, {
      executionProviders: [backend], graphOptimizationLevel: "all",
    });
    return new EdgeportDetector(ort, session, record, { model: file, precision: model.precision, backend,
                                                        threads, crossOriginIsolated: isolated,
                                                        onnxruntimeWeb: ort.env.versions?.web }, options.nms);
  }

  constructor(ort, session, record, info, nmsOptions = {}) {
    this.ort = ort; this.session = session; this.record = record; this.info = info;
    this.nms = { ...DEFAULT_NMS, ...nmsOptions };
  }

  /** Detect on one image (URL, Blob/File, ImageBitmap, img/video/canvas element): detections in original pixels + timing. */
  async detect(source, nmsOptions = {}) {
    const t0 = performance.now();
    const { rgba, width, height } = await readPixels(source);
    const t1 = performance.now();
    const { record } = this;
    const { canvas, place } = letterbox(rgba, width, height, record.imgsz, record.preprocess.pad_value,
                                        record.preprocess.interpolation);
    const input = inputTensorData(canvas, record.imgsz[0], record.imgsz[1], record.inputs[0], record.layout,
                                  record.preprocess.scale);
    const t2 = performance.now();
    const results = await this.session.run({ [this.session.inputNames[0]]: new this.ort.Tensor(input.type, input.data, input.dims) });
    const t3 = performance.now();
    const outputs = {};
    for (const spec of record.outputs) {
      const tensor = results[spec.name];
      outputs[spec.name] = { data: dequantize(tensor.data, tensor.type, spec), dims: tensor.dims };
    }
    const result = postprocess(outputs, record, place, { ...this.nms, ...nmsOptions });
    const t4 = performance.now();
    result.timing = { decode_ms: t1 - t0, preprocess_ms: t2 - t1, inference_ms: t3 - t2, postprocess_ms: t4 - t3,
                      total_ms: t4 - t0 };
    return result;
  }

  /** Time `runs` detections of one image after `warmup`: p50/p99 of inference and of the whole pipeline (ms). */
  async benchmark(source, { runs = 50, warmup = 5 } = {}) {
    const inference = [], total = [];
    for (let i = 0; i < warmup + runs; i++) {
      const { timing } = await this.detect(source);
      if (i >= warmup) { inference.push(timing.inference_ms); total.push(timing.total_ms - timing.decode_ms); }
    }
    return { runs, warmup, ...this.info,
             inference_ms_p50: percentile(inference, 50), inference_ms_p99: percentile(inference, 99),
             end_to_end_ms_p50: percentile(total, 50), end_to_end_ms_p99: percentile(total, 99) };
  }
}

// ---- the page ---------------------------------------------------------------------------------

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"];

function draw(ctx, image, result) {
  ctx.canvas.width = result.image_hw[1];
  ctx.canvas.height = result.image_hw[0];
  ctx.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(...result.image_hw) / 300));
  ctx.font = `${8 * line}px sans-serif`;
  for (const d of result.detections) {
    const [x1, y1, x2, y2] = d.xyxy, color = COLORS[d.class_id % COLORS.length];
    ctx.strokeStyle = color; ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.class_name} ${d.score.toFixed(2)}`, tw = ctx.measureText(label).width + 2 * line;
    const ty = y1 > 10 * line ? y1 - 10 * line : y1;
    ctx.fillStyle = color; ctx.fillRect(x1, ty, tw, 10 * line);
    ctx.fillStyle = "#fff"; ctx.fillText(label, x1 + line, ty + 8 * line);
  }
}

async function startPage() {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const status = (text) => { $("status").textContent = text; };
  const base = new URL("./", import.meta.url);
  let detector;
  const ready = EdgeportDetector.open(base, {
    backend: params.get("backend") || undefined, model: params.get("model") || undefined,
    format: params.get("format") || undefined,
    threads: Number(params.get("threads")) || undefined,
  }).then((d) => {
    detector = d;
    const i = d.info;
    $("model").textContent = `${i.model} (${i.precision}) on ${i.backend}, ${i.threads} thread(s)` +
      (i.crossOriginIsolated ? "" : " — not cross-origin isolated: single-threaded");
    status("ready: pick an image or start the webcam");
    return d.info;
  }).catch((error) => { status(`error: ${error.message}`); throw error; });

  const show = async (image, result) => {
    draw($("view").getContext("2d"), image, result);
    const t = result.timing;
    $("latency").textContent = `${result.detections.length} detections — inference ${t.inference_ms.toFixed(1)} ms, ` +
      `pre ${t.preprocess_ms.toFixed(1)} ms, post ${t.postprocess_ms.toFixed(1)} ms, total ${t.total_ms.toFixed(1)} ms`;
  };
  $("file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    await ready;
    try {
      const result = await detector.detect(file);
      const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
      await show(bitmap, result);
      bitmap.close();
    } catch (error) { status(`error: ${error.message}`); }
  });
  let stream = null;
  $("webcam").addEventListener("click", async () => {
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; $("webcam").textContent = "Start webcam"; return; }
    await ready;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (error) { status(`webcam: ${error.message}`); return; }
    $("webcam").textContent = "Stop webcam";
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    while (stream) {
      const frame = await createImageBitmap(video);
      const result = await detector.detect(frame);
      await show(frame, result);
      frame.close();
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
    video.srcObject = null;
  });
  window.edgeport = {
    ready,
    get info() { return detector && detector.info; },
    get record() { return detector && detector.record; },
    detect: async (source, nmsOptions) => (await ready, detector.detect(source, nmsOptions)),
    benchmark: async (source, options) => (await ready, detector.benchmark(source, options)),
  };
}

if (typeof document !== "undefined" && document.getElementById("edgeport-page")) startPage();
