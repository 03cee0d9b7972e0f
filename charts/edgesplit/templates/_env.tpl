{{/*
The environment of each role: the EDGESPLIT_<ROLE>_* variables its pydantic-settings class reads.
The same names are set by docker-compose.yml and by `edgesplit up` (tooling/stack.py);
tests/deploy/test_env_contract.py checks that the three lists agree and that every name is a field
of the role's settings class.
*/}}

{{- define "edgesplit.env.secret" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "edgesplit.tokenSecret" (dict "ctx" .ctx "key" .key) }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* Variables of the executor and the cloud service (services/common/settings.py). */}}
{{- define "edgesplit.env.modelService" -}}
{{- $p := .prefix -}}
- name: {{ $p }}_HOST
  value: "0.0.0.0"
- name: {{ $p }}_PORT
  value: {{ .port | quote }}
- name: {{ $p }}_MODELS
  value: {{ include "edgesplit.models" .ctx | quote }}
- name: {{ $p }}_MODEL_FILES
  value: {{ include "edgesplit.modelFiles" .ctx | quote }}
- name: {{ $p }}_WEIGHTS_DIR
  value: /var/lib/edgesplit/weights
- name: {{ $p }}_SEED
  value: {{ .ctx.Values.seed | int64 | quote }}
- name: {{ $p }}_MAX_BODY_BYTES
  value: {{ .maxBodyBytes | int64 | quote }}
{{- /* One token per caller: the executor takes the orchestrator's and the allocator's, the cloud its own. */}}
{{ include "edgesplit.env.secret" (dict "ctx" .ctx "name" (printf "%s_TOKEN" $p) "key" (ternary "cloud-token" "orchestrator-token" (eq .container "cloud"))) }}
{{- if eq .container "executor" }}
{{ include "edgesplit.env.secret" (dict "ctx" .ctx "name" (printf "%s_ALLOCATOR_TOKEN" $p) "key" "allocator-token") }}
{{- end }}
- name: {{ $p }}_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- /* The cloud's torch threads = its CPU limit. The executor gets no THREADS: its capacity is
the live cgroup CPU limit, re-read on every quota change, so an in-place resize by the allocator
raises it without a restart (an env value would stay frozen at the pod's start). */}}
{{- if eq .container "cloud" }}
- name: {{ $p }}_THREADS
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.cpu
      divisor: "1"
{{- end }}
{{- end }}

{{- define "edgesplit.env.executor" -}}
{{ include "edgesplit.env.modelService" (dict "ctx" . "prefix" "EDGESPLIT_EXECUTOR" "container" "executor" "port" .Values.executor.port "maxBodyBytes" .Values.executor.maxBodyBytes) }}
- name: EDGESPLIT_EXECUTOR_SLICE_DELAY_S
  value: {{ .Values.executor.sliceDelayS | quote }}
{{- end }}

{{- define "edgesplit.env.cloud" -}}
{{ include "edgesplit.env.modelService" (dict "ctx" . "prefix" "EDGESPLIT_CLOUD" "container" "cloud" "port" .Values.cloud.port "maxBodyBytes" .Values.cloud.maxBodyBytes) }}
{{- end }}

{{- define "edgesplit.env.orchestrator" -}}
{{- $o := .Values.orchestrator -}}
- name: EDGESPLIT_ORCHESTRATOR_HOST
  value: "0.0.0.0"
- name: EDGESPLIT_ORCHESTRATOR_PORT
  value: {{ $o.port | quote }}
- name: EDGESPLIT_ORCHESTRATOR_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EDGESPLIT_ORCHESTRATOR_REDIS_URL
  value: {{ include "edgesplit.redisUrl" . | quote }}
- name: EDGESPLIT_ORCHESTRATOR_PREFIX
  value: {{ .Values.redis.prefix | quote }}
- name: EDGESPLIT_ORCHESTRATOR_CLUSTER_FILE
  value: /etc/edgesplit/cluster.yaml
- name: EDGESPLIT_ORCHESTRATOR_MODELS
  value: {{ include "edgesplit.models" . | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MODEL_FILES
  value: {{ include "edgesplit.modelFiles" . | quote }}
- name: EDGESPLIT_ORCHESTRATOR_WEIGHTS_DIR
  value: /var/lib/edgesplit/weights
- name: EDGESPLIT_ORCHESTRATOR_SEED
  value: {{ .Values.seed | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MODE
  value: {{ $o.mode | quote }}
- name: EDGESPLIT_ORCHESTRATOR_PIPELINE
  value: {{ $o.pipeline | quote }}
- name: EDGESPLIT_ORCHESTRATOR_SPLIT
  value: {{ $o.split | quote }}
- name: EDGESPLIT_ORCHESTRATOR_AGING_S
  value: {{ $o.agingS | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_QUEUE
  value: {{ $o.maxQueue | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_PRIORITY
  value: {{ $o.maxPriority | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_BATCH
  value: {{ $o.maxBatch | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_QUEUE_DELAY_S
  value: {{ $o.maxQueueDelayS | toJson | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_BATCH_BY_PRIORITY
  value: {{ $o.maxBatchByPriority | toJson | quote }}
- name: EDGESPLIT_ORCHESTRATOR_BATCH_CHUNK
  value: {{ $o.batchChunk | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_URGENT_WINDOW_S
  value: {{ $o.urgentWindowS | quote }}
- name: EDGESPLIT_ORCHESTRATOR_URGENT_MAX_BATCH
  value: {{ $o.urgentMaxBatch | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_EXPRESS_LANE
  value: {{ $o.expressLane | quote }}
- name: EDGESPLIT_ORCHESTRATOR_DEFAULT_TIMEOUT_S
  value: {{ $o.defaultTimeoutS | quote }}
- name: EDGESPLIT_ORCHESTRATOR_RESULT_TTL_S
  value: {{ $o.resultTtlS | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_LEASE_S
  value: {{ $o.leaseS | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_FINISHED
  value: {{ $o.maxFinished | int64 | quote }}
- name: EDGESPLIT_ORCHESTRATOR_DRAIN_S
  value: {{ $o.drainS | quote }}
- name: EDGESPLIT_ORCHESTRATOR_MAX_BODY_BYTES
  value: {{ $o.maxBodyBytes | int64 | quote }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ORCHESTRATOR_REDIS_PASSWORD" "key" "redis-password" "optional" true) }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ORCHESTRATOR_TOKEN" "key" "orchestrator-token") }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ORCHESTRATOR_CLOUD_TOKEN" "key" "cloud-token") }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ORCHESTRATOR_API_TOKEN" "key" "api-token" "optional" true) }}
{{- end }}

{{- define "edgesplit.env.allocator" -}}
{{- $a := .Values.allocator -}}
- name: EDGESPLIT_ALLOCATOR_HOST
  value: "0.0.0.0"
- name: EDGESPLIT_ALLOCATOR_PORT
  value: {{ $a.port | quote }}
- name: EDGESPLIT_ALLOCATOR_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EDGESPLIT_ALLOCATOR_REDIS_URL
  value: {{ include "edgesplit.redisUrl" . | quote }}
- name: EDGESPLIT_ALLOCATOR_PREFIX
  value: {{ .Values.redis.prefix | quote }}
- name: EDGESPLIT_ALLOCATOR_CLUSTER_FILE
  value: /etc/edgesplit/cluster.yaml
- name: EDGESPLIT_ALLOCATOR_MODELS
  value: {{ include "edgesplit.models" . | quote }}
- name: EDGESPLIT_ALLOCATOR_MODEL_FILES
  value: {{ include "edgesplit.modelFiles" . | quote }}
- name: EDGESPLIT_ALLOCATOR_SEED
  value: {{ .Values.seed | int64 | quote }}
- name: EDGESPLIT_ALLOCATOR_POLICY
  value: {{ $a.policy | quote }}
- name: EDGESPLIT_ALLOCATOR_SPLIT
  value: {{ .Values.orchestrator.split | quote }}
- name: EDGESPLIT_ALLOCATOR_PERIOD_S
  value: {{ $a.periodS | quote }}
- name: EDGESPLIT_ALLOCATOR_MARGIN
  value: {{ $a.margin | quote }}
- name: EDGESPLIT_ALLOCATOR_KUBERNETES
  value: {{ $a.kubernetes | quote }}
- name: EDGESPLIT_ALLOCATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: EDGESPLIT_ALLOCATOR_EXECUTOR_SELECTOR
  value: {{ include "edgesplit.executorSelector" . | quote }}
- name: EDGESPLIT_ALLOCATOR_EXECUTOR_PORT
  value: {{ .Values.executor.port | quote }}
- name: EDGESPLIT_ALLOCATOR_EXECUTOR_CONTAINER
  value: executor
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ALLOCATOR_REDIS_PASSWORD" "key" "redis-password" "optional" true) }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ALLOCATOR_TOKEN" "key" "allocator-token") }}
{{ include "edgesplit.env.secret" (dict "ctx" . "name" "EDGESPLIT_ALLOCATOR_ADMIN_TOKEN" "key" "admin-token") }}
{{- end }}
