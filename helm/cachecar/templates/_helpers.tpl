{{/*
Names and labels. Every helper reads only .Values, .Release and .Chart, and
names come from "cachecar", never from .Chart.Name: a parent chart includes
them with its own context, e.g.
  (dict "Values" .Values.cachecar "Release" .Release "Chart" .Chart)
and gets the same names and image as the chart itself renders.
*/}}
{{- define "cachecar.name" -}}
cachecar
{{- end -}}

{{- define "cachecar.fullname" -}}
{{- if contains "cachecar" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cachecar" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cachecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cachecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cachecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "cachecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image: its tag is a value (the chart's appVersion by default), so a parent chart's context names the same image. */}}
{{- define "cachecar.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{- define "cachecar.secretName" -}}
{{- printf "%s-secrets" (include "cachecar.fullname" .) -}}
{{- end -}}

{{/* Where cachecar forwards to. */}}
{{- define "cachecar.upstreamURL" -}}
{{- if .Values.upstream.url -}}
{{- .Values.upstream.url -}}
{{- else if ne .Values.mode "standalone" -}}
{{- printf "http://127.0.0.1:%d" (int .Values.app.port) -}}
{{- else -}}
{{- fail "mode standalone needs upstream.url (the Service cachecar fronts)" -}}
{{- end -}}
{{- end -}}

{{/*
The whole cachecar.yaml: the chart's keys (listen, upstream url and
timeouts, admin, shutdown, redis url, timeout and prefix) over the user's
`config`, whose other upstream and cache.redis keys pass through.
*/}}
{{- define "cachecar.configYaml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.proxy)) -}}
{{- $upstream := deepCopy (default (dict) (get $cfg "upstream")) -}}
{{- $_ := set $upstream "url" (include "cachecar.upstreamURL" .) -}}
{{- $_ := set $upstream "connect_timeout" .Values.upstream.connectTimeout -}}
{{- $_ := set $upstream "timeout" .Values.upstream.timeout -}}
{{- $_ := set $cfg "upstream" $upstream -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) "token" "${CACHECAR_ADMIN_TOKEN:-}") -}}
{{- $_ := set $cfg "shutdown" (dict "drain_delay" (printf "%ds" (int .Values.shutdown.drainDelaySeconds)) "grace_period" (printf "%ds" (int .Values.shutdown.gracePeriodSeconds))) -}}
{{- if .Values.redis.enabled -}}
{{- $cache := default (dict) (get $cfg "cache") -}}
{{- $_ := set $cache "store" .Values.redis.store -}}
{{- $redis := deepCopy (default (dict) (get $cache "redis")) -}}
{{- $_ := unset $redis "cluster" -}}
{{- $_ := set $redis "url" "${CACHECAR_REDIS_URL}" -}}
{{- $_ := set $redis "timeout" .Values.redis.timeout -}}
{{- $_ := set $redis "key_prefix" .Values.redis.keyPrefix -}}
{{- $_ := set $cache "redis" $redis -}}
{{- $_ := set $cfg "cache" $cache -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Named templates an existing app chart (with this chart as a dependency)
includes to add cachecar to its own pod, with an explicit context:
  {{- $cachecar := dict "Values" .Values.cachecar "Release" .Release "Chart" .Chart }}
  containers:            (initContainers with sidecar.native)
    {{- include "cachecar.container" $cachecar | nindent 8 }}
  volumes:
    {{- include "cachecar.volume" $cachecar | nindent 8 }}
The subchart renders the ConfigMap itself (see
examples/helm/app-with-cachecar and docs/deployment.md).
*/}}
{{- define "cachecar.container" -}}
- name: cachecar
  image: {{ include "cachecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.sidecar.native }}
  # A native sidecar (Kubernetes 1.29+): started before the app, stopped
  # after it, so it never forwards to an app that is gone.
  restartPolicy: Always
  {{- end }}
  args: ["run", "--config", "/etc/cachecar/cachecar.yaml", "--log-format", {{ .Values.log.format | quote }}, "--log-filter", {{ .Values.log.filter | quote }}]
  ports:
    - name: proxy
      containerPort: {{ .Values.ports.proxy }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
  env:
    - name: CACHECAR_ADMIN_TOKEN
      {{- if .Values.adminToken.existingSecret }}
      valueFrom:
        secretKeyRef:
          name: {{ .Values.adminToken.existingSecret }}
          key: {{ .Values.adminToken.key }}
      {{- else if .Values.adminToken.value }}
      valueFrom:
        secretKeyRef:
          name: {{ include "cachecar.secretName" . }}
          key: admin-token
      {{- else }}
      value: ""
      {{- end }}
    {{- if .Values.redis.enabled }}
    - name: CACHECAR_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ default (include "cachecar.secretName" .) .Values.redis.existingSecret }}
          key: {{ if .Values.redis.existingSecret }}{{ .Values.redis.key }}{{ else }}redis-url{{ end }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    periodSeconds: 5
    failureThreshold: 2
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: cachecar-config
      mountPath: /etc/cachecar
      readOnly: true
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "cachecar.volume" -}}
- name: cachecar-config
  configMap:
    name: {{ include "cachecar.fullname" . }}
{{- end -}}

{{- define "cachecar.configmapData" -}}
cachecar.yaml: |
  {{- include "cachecar.configYaml" . | nindent 2 }}
{{- end -}}
