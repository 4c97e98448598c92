{{/* Names and labels. */}}
{{- define "cachecar.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cachecar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cachecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cachecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cachecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "cachecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cachecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cachecar.secretName" -}}
{{- printf "%s-secrets" (include "cachecar.fullname" .) -}}
{{- end -}}

{{/* Where cachecar forwards to. */}}
{{- define "cachecar.upstreamURL" -}}
{{- if .Values.upstream.url -}}
{{- .Values.upstream.url -}}
{{- else if eq .Values.mode "sidecar" -}}
{{- printf "http://127.0.0.1:%d" (int .Values.app.port) -}}
{{- else -}}
{{- fail "mode standalone needs upstream.url (the Service cachecar fronts)" -}}
{{- end -}}
{{- end -}}

{{/*
The whole cachecar.yaml: the chart's keys (listen, upstream, admin,
shutdown, log format, redis) over the user's `config`.
*/}}
{{- define "cachecar.configYaml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.proxy)) -}}
{{- $_ := set $cfg "upstream" (dict "url" (include "cachecar.upstreamURL" .) "connect_timeout" .Values.upstream.connectTimeout "timeout" .Values.upstream.timeout) -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) "token" "${CACHECAR_ADMIN_TOKEN:-}") -}}
{{- $_ := set $cfg "shutdown" (dict "drain_delay" (printf "%ds" (int .Values.shutdown.drainDelaySeconds)) "grace_period" (printf "%ds" (int .Values.shutdown.gracePeriodSeconds))) -}}
{{- if .Values.redis.enabled -}}
{{- $cache := default (dict) (get $cfg "cache") -}}
{{- $_ := set $cache "store" .Values.redis.store -}}
{{- $_ := set $cache "redis" (dict "url" "${CACHECAR_REDIS_URL}" "timeout" .Values.redis.timeout "key_prefix" .Values.redis.keyPrefix) -}}
{{- $_ := set $cfg "cache" $cache -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Named templates an existing app chart can include to add cachecar as a
sidecar to its own pod:
  containers:
    - ... your app ...
    {{- include "cachecar.container" . | nindent 4 }}
  volumes:
    {{- include "cachecar.volume" . | nindent 4 }}
and a ConfigMap with {{ include "cachecar.configmapData" . }} as data.
*/}}
{{- define "cachecar.container" -}}
- name: cachecar
  image: {{ include "cachecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
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
