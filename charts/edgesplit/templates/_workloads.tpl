{{/*
A Deployment of one edgesplit role (cloud, orchestrator, allocator), and its ClusterIP Service.
(dict "ctx" $ "component" "cloud" "values" .Values.cloud "serviceAccount" "" )
*/}}
{{- define "edgesplit.deployment" -}}
{{- $ctx := .ctx }}
{{- $v := .values }}
{{- $sel := dict "ctx" $ctx "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "edgesplit.componentName" $sel }}
  namespace: {{ include "edgesplit.namespace" $ctx }}
  labels:
    {{- include "edgesplit.labels" $sel | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      {{- include "edgesplit.selectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "edgesplit.labels" $sel | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "edgesplit.checksums" $ctx | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "edgesplit.podCommon" (dict "ctx" $ctx "values" $v) | nindent 6 }}
      {{- if .serviceAccount }}
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.terminationGracePeriodSeconds }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          args: [{{ .component | quote }}]
          {{- include "edgesplit.containerCommon" (dict "ctx" $ctx "port" $v.port) | nindent 10 }}
          {{- with $v.preStopSleepSeconds }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ . }}
          {{- end }}
          env:
            {{- include (printf "edgesplit.env.%s" .component) $ctx | nindent 12 }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- include "edgesplit.volumeMounts" $ctx | nindent 12 }}
      volumes:
        {{- include "edgesplit.volumes" $ctx | nindent 8 }}
{{- end }}

{{- define "edgesplit.service" -}}
{{- $sel := dict "ctx" .ctx "component" .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "edgesplit.componentName" $sel }}
  namespace: {{ include "edgesplit.namespace" .ctx }}
  labels:
    {{- include "edgesplit.labels" $sel | nindent 4 }}
  {{- with .values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .values.service.type }}
  selector:
    {{- include "edgesplit.selectorLabels" $sel | nindent 4 }}
  ports:
    - name: http
      port: {{ .values.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}
