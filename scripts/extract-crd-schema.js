#!/usr/bin/env node
// Collects the openAPIV3Schema of every served version of the given CRDs into one JSON file,
// keyed "<group>/<version>/<Kind>". The tests validate every custom resource the constructs emit
// against exactly these schemas (the ones the API server applies), with ajv.
//
//   node scripts/extract-crd-schema.js <out.json> <crd.yaml>...
const fs = require('fs');
const YAML = require('yaml');

const [output, ...inputs] = process.argv.slice(2);
if (!output || inputs.length === 0) {
  console.error('usage: extract-crd-schema.js <out.json> <crd.yaml>...');
  process.exit(2);
}
const schemas = {};
for (const input of inputs) {
  for (const crd of YAML.parseAllDocuments(fs.readFileSync(input, 'utf8')).map((doc) => doc.toJS())) {
    if (!crd || crd.kind !== 'CustomResourceDefinition') continue;
    for (const version of crd.spec.versions) {
      if (version.served) schemas[`${crd.spec.group}/${version.name}/${crd.spec.names.kind}`] = version.schema.openAPIV3Schema;
    }
  }
}
fs.writeFileSync(output, JSON.stringify(schemas) + '\n');
console.log(`${Object.keys(schemas).length} CRD schemas written to ${output}: ${Object.keys(schemas).join(', ')}`);
