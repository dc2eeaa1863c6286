#!/usr/bin/env bash
# Regenerates imports/: the Kubernetes 1.27 API and the CRDs the constructs emit.
#
# Works offline: the Kubernetes schema and the CRDs are read from the shared folder beside the checkout
# (SHARED, default ../shared). Only the generated code is committed, never those inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
K8S_VERSION=1.27.0
export CDK8S_CHECK_UPGRADE=false

rm -rf imports build/crds && mkdir -p imports build/crds

NODE_OPTIONS="--require $(realpath "$SHARED/tools/offline-k8s-schema.cjs")" \
  npx cdk8s import "k8s@$K8S_VERSION" --language typescript --output imports

# cdk8s import reads one file per call and writes imports/<group>.ts, so each group's CRDs are joined first.
import_group() {
  local group=$1; shift
  for crd in "$@"; do echo '---'; cat "$SHARED/crds/$crd"; done > "build/crds/$group.yaml"
  npx cdk8s import "build/crds/$group.yaml" --language typescript --output imports
}
import_group monitoring.coreos.com \
  prometheus-operator/monitoring.coreos.com_servicemonitors.yaml \
  prometheus-operator/monitoring.coreos.com_podmonitors.yaml \
  prometheus-operator/monitoring.coreos.com_prometheusrules.yaml
import_group keda.sh \
  keda/keda.sh_scaledobjects.yaml \
  keda/keda.sh_scaledjobs.yaml \
  keda/keda.sh_triggerauthentications.yaml
import_group karpenter.sh \
  karpenter/karpenter.sh_nodepools.yaml

# The CRDs' own schemas, for the tests' validator: custom resources are checked against what the API server applies.
node scripts/extract-crd-schema.js imports/crd-schemas.json build/crds/*.yaml
