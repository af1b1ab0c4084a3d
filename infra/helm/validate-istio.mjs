// Validates rendered Istio objects against the schemas of @kubernetes-models/istio (Istio's CRDs).
//
//   node validate-istio.mjs FILE_OR_DIR...
//
// Each YAML document must be a known Istio kind, pass its CRD schema, and carry no field the schema does
// not know. The CRD schemas leave unknown fields open (Kubernetes would prune them silently, so a
// misspelled `retires:` would just vanish), so the validator's reads are watched: any key the schema never
// looked at is reported. Durations (timeout, perTryTimeout, interval, ...) must parse as Go durations,
// which the CRDs check only with CEL rules that this package cannot run.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as istio from "@kubernetes-models/istio";
import { parseAllDocuments } from "yaml";

const DURATION_KEYS = new Set([
  "timeout",
  "perTryTimeout",
  "connectTimeout",
  "idleTimeout",
  "interval",
  "baseEjectionTime",
  "maxConnectionDuration",
  "terminationDrainDuration",
]);
const DURATION = /^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|µs|ns))+$/;

// "networking.istio.io/v1" -> istio.networkingIstioIo.v1
function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  if (!group || !version || !group.endsWith(".istio.io")) return undefined;
  const key = group
    .split(".")
    .map((part, i) => (i === 0 ? part : part[0].toUpperCase() + part.slice(1)))
    .join("");
  return istio[key]?.[version]?.[kind];
}

// A copy of `value` whose objects record the keys the validator reads.
function watched(value, path, seen) {
  if (Array.isArray(value)) return value.map((item, i) => watched(item, `${path}[${i}]`, seen));
  if (value === null || typeof value !== "object") return value;
  const copy = {};
  for (const [key, item] of Object.entries(value)) copy[key] = watched(item, `${path}.${key}`, seen);
  const touched = new Set();
  seen.push({ path, copy, touched });
  return new Proxy(copy, {
    get(target, prop, receiver) {
      if (typeof prop === "string") touched.add(prop);
      return Reflect.get(target, prop, receiver);
    },
    has(target, prop) {
      if (typeof prop === "string") touched.add(prop);
      return Reflect.has(target, prop);
    },
  });
}

function durations(value, path, problems) {
  if (Array.isArray(value)) value.forEach((item, i) => durations(item, `${path}[${i}]`, problems));
  if (value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, item] of Object.entries(value)) {
    if (DURATION_KEYS.has(key) && typeof item === "string" && !DURATION.test(item)) {
      problems.push(`${path}.${key}: "${item}" is not a duration (e.g. 500ms, 5s, 1m)`);
    }
    durations(item, `${path}.${key}`, problems);
  }
}

export function validate(document) {
  const { apiVersion, kind } = document ?? {};
  const Model = modelFor(apiVersion, kind);
  if (!Model) return [`unknown Istio kind ${apiVersion} ${kind}`];
  const model = new Model(document);
  const seen = [];
  const proxy = watched(model.toJSON(), "", seen);
  try {
    model.validate.call(proxy);
  } catch (error) {
    return [error.message];
  }
  const problems = [];
  const unknown = [];
  for (const { path, copy, touched } of seen) {
    for (const key of Object.keys(copy)) {
      if (!touched.has(key)) unknown.push(`${path}.${key}`);
    }
  }
  // Report the outermost unknown field only (its children were never looked at either).
  for (const field of unknown) {
    if (!unknown.some((other) => field !== other && field.startsWith(`${other}.`))) {
      problems.push(`${field}: unknown field`);
    }
  }
  durations(document, "", problems);
  return problems;
}

function files(paths) {
  return paths.flatMap((path) =>
    statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((name) => /\.ya?ml$/.test(name))
          .sort()
          .map((name) => join(path, name))
      : [path],
  );
}

function main(args) {
  if (args.length === 0) {
    console.error("usage: node validate-istio.mjs FILE_OR_DIR...");
    return 2;
  }
  let checked = 0;
  let failed = 0;
  for (const file of files(args)) {
    for (const parsed of parseAllDocuments(readFileSync(file, "utf8"))) {
      if (parsed.errors.length) {
        console.error(`${file}: YAML: ${parsed.errors[0].message}`);
        failed++;
        continue;
      }
      const document = parsed.toJS();
      if (!document) continue;
      checked++;
      const label = `${file}: ${document.kind ?? "?"} ${document.metadata?.name ?? "?"}`;
      const problems = validate(document);
      if (problems.length) {
        failed++;
        for (const problem of problems) console.error(`${label}: ${problem}`);
      } else {
        console.log(`${label}: valid`);
      }
    }
  }
  if (checked === 0) {
    console.error("no Istio objects found");
    return 1;
  }
  console.log(`istio: ${checked} objects, ${failed} invalid`);
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
