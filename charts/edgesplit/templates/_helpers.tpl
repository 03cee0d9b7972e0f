{{/* Names, labels, image and shared pod parts. Every helper is prefixed with the chart name. */}}

{{- define "edgesplit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object; short enough for "-executor-NN" pod names and DNS labels. */}}
{{- define "edgesplit.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "edgesplit.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edgesplit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's objects: (dict "ctx" $ "component" "executor") */}}
{{- define "edgesplit.componentName" -}}
{{- printf "%s-%s" (include "edgesplit.fullname" .ctx) .component }}
{{- end }}

{{/* Selector labels: app.kubernetes.io/* only. (dict "ctx" $ "component" "executor") */}}
{{- define "edgesplit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgesplit.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of every object. (dict "ctx" $ "component" "executor") */}}
{{- define "edgesplit.labels" -}}
helm.sh/chart: {{ include "edgesplit.chart" .ctx }}
{{ include "edgesplit.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: edgesplit
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The label selector string the allocator uses to find executor pods. */}}
{{- define "edgesplit.executorSelector" -}}
{{- $labels := include "edgesplit.selectorLabels" (dict "ctx" . "component" "executor") | fromYaml }}
{{- $pairs := list }}
{{- range $k := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $k (get $labels $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "edgesplit.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "edgesplit.redisImage" -}}
{{- $img := .Values.redis.image }}
{{- if $img.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $img.registry) $img.repository $img.tag }}
{{- else }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}
{{- end }}

{{- define "edgesplit.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:%d/0" (include "edgesplit.componentName" (dict "ctx" . "component" "redis")) (int .Values.redis.port) }}
{{- else }}
{{- required "redis.externalUrl is required when redis.enabled is false" .Values.redis.externalUrl }}
{{- end }}
{{- end }}

{{- define "edgesplit.secretName" -}}
{{- default (printf "%s-auth" (include "edgesplit.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "edgesplit.configName" -}}
{{- printf "%s-config" (include "edgesplit.fullname" .) }}
{{- end }}

{{- define "edgesplit.allocatorServiceAccountName" -}}
{{- if .Values.allocator.serviceAccount.create }}
{{- default (include "edgesplit.componentName" (dict "ctx" . "component" "allocator")) .Values.allocator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.allocator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Comma list of the built-in models (the services read MODELS as a comma list). */}}
{{- define "edgesplit.models" -}}
{{- join "," .Values.models }}
{{- end }}

{{/* Comma list of the mounted model spec files. */}}
{{- define "edgesplit.modelFiles" -}}
{{- $files := list }}
{{- range $name := keys .Values.modelFiles | sortAlpha }}
{{- $files = append $files (printf "/etc/edgesplit/models/%s" $name) }}
{{- end }}
{{- join "," $files }}
{{- end }}

{{/* Pod-level parts shared by the edgesplit pods. (dict "ctx" $ "values" .Values.executor) */}}
{{- define "edgesplit.podCommon" -}}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Container parts shared by the edgesplit containers: image, security context, port, probes. */}}
{{- define "edgesplit.containerCommon" -}}
{{- $p := .ctx.Values.probes -}}
image: {{ include "edgesplit.image" .ctx }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .ctx.Values.containerSecurityContext | nindent 2 }}
ports:
  - name: http
    containerPort: {{ .port }}
    protocol: TCP
startupProbe:
  httpGet:
    path: /v2/health/live
    port: http
  {{- toYaml $p.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: http
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: http
  {{- toYaml $p.readiness | nindent 2 }}
{{- end }}

{{/* Volumes every edgesplit pod mounts: the config (cluster.yaml, model specs), weights, /tmp. */}}
{{- define "edgesplit.volumes" -}}
- name: config
  configMap:
    name: {{ include "edgesplit.configName" . }}
    items:
      - key: cluster.yaml
        path: cluster.yaml
      {{- range $name := keys .Values.modelFiles | sortAlpha }}
      - key: {{ printf "model.%s" $name }}
        path: {{ printf "models/%s" $name }}
      {{- end }}
- name: weights
  {{- if .Values.weights.volume }}
  {{- toYaml .Values.weights.volume | nindent 2 }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "edgesplit.volumeMounts" -}}
- name: config
  mountPath: /etc/edgesplit
  readOnly: true
- name: weights
  mountPath: /var/lib/edgesplit/weights
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Pod annotation that rolls the pods when the config or the generated secret changes. */}}
{{- define "edgesplit.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/* Soft or hard anti-affinity over `topologyKey` between pods of one component. */}}
{{- define "edgesplit.antiAffinity" -}}
{{- $term := dict "topologyKey" .topologyKey "labelSelector" (dict "matchLabels" (include "edgesplit.selectorLabels" . | fromYaml)) -}}
podAntiAffinity:
{{- if eq .mode "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{- toYaml $term | nindent 6 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- end }}
{{- end }}

{{/* A float as YAML 1.1 (PyYAML) reads it: plain decimal, or an exponent form with a dot and a sign. */}}
{{- define "edgesplit.float" -}}
{{- $f := float64 . }}
{{- $s := toJson $f }}
{{- if contains "e" $s }}
{{- printf "%.6e" $f }}
{{- else }}
{{- $s }}
{{- end }}
{{- end }}
