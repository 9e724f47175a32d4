{{/*
Names, labels, the rendered gatehouse.toml, and the Gatehouse container and its volumes as
named templates, so other charts can add Gatehouse to a pod spec of their own (README
"Kubernetes"). Every template here takes a context with .Values, .Release and .Chart: this
chart's own templates pass `.`; a parent chart passes this chart's scope, `.Subcharts.gatehouse`
(see "gatehouse.container" below).
*/}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{/*
Whether this chart renders the pod (and its Service, ServiceAccount, ...): in gateway and
sidecar mode. In include mode another chart's pod holds the Gatehouse container (through
"gatehouse.container" and "gatehouse.volumes"), and this chart renders only its ConfigMap and
Secret, which that pod mounts.
*/}}
{{- define "gatehouse.ownsPod" -}}
{{- if ne .Values.mode "include" }}true{{ end }}
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether any secret is mounted as a file. */}}
{{- define "gatehouse.secretFiles" -}}
{{- if or (include "gatehouse.secretKey" (list . "signingKey")) (include "gatehouse.secretKey" (list . "pepper")) (ternary .Values.existingSecret.files .Values.secret.files (not (empty .Values.existingSecret.name))) }}true{{ end }}
{{- end }}

{{/* Whether the chart creates a Secret: any of its values is set and no existingSecret is named. */}}
{{- define "gatehouse.ownSecret" -}}
{{- $s := .Values.secret }}
{{- if and (not .Values.existingSecret.name) (or $s.storeUrl $s.signingKey $s.pepper $s.files) }}true{{ end }}
{{- end }}

{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{/* The Secret's key for one wired value ("" when not wired). */}}
{{- define "gatehouse.secretKey" -}}
{{- $ctx := index . 0 }}{{ $which := index . 1 }}
{{- if $ctx.Values.existingSecret.name }}
{{- index $ctx.Values.existingSecret (printf "%sKey" $which) }}
{{- else if index $ctx.Values.secret $which }}
{{- $which | kebabcase }}
{{- end }}
{{- end }}

{{/*
The config Gatehouse reads: the chart's part (listen addresses, drain, upstream in sidecar
mode, secret-file paths) under the user's `config`, whose values win. Checked here so a wrong
combination fails at install, not in a crash-looping pod.
*/}}
{{- define "gatehouse.configValues" -}}
{{- $v := .Values }}
{{- $server := dict "listen" (printf "0.0.0.0:%v" $v.containerPort) "shutdown_grace" $v.shutdownGrace "shutdown_delay" $v.shutdownDelay }}
{{- if $v.metrics.enabled }}
{{- $_ := set $server "metrics_listen" (printf "0.0.0.0:%v" $v.metrics.port) }}
{{- end }}
{{- $chart := dict "server" $server }}
{{- if has $v.mode (list "sidecar" "include") }}
{{- $_ := set $chart "upstream" (dict "url" (printf "http://127.0.0.1:%v" $v.app.port)) }}
{{- end }}
{{- $user := deepCopy (default dict $v.config) }}
{{- if and (hasKey $user "upstream") (not (get $user.upstream "url")) }}
{{- $_ := unset $user.upstream "url" }}
{{- end }}
{{- $c := mergeOverwrite $chart $user }}
{{- if not (and (hasKey $c "upstream") (get $c.upstream "url")) }}
{{- fail "config.upstream.url is required in gateway mode: the Service Gatehouse protects" }}
{{- end }}
{{- if include "gatehouse.secretKey" (list . "signingKey") }}
{{- if not (hasKey $c "tokens") }}
{{- fail "a signing key is set but config.tokens is not: the key signs Gatehouse's own tokens" }}
{{- end }}
{{- $_ := set $c.tokens "key_file" "/etc/gatehouse/secrets/signing-key" }}
{{- end }}
{{- if include "gatehouse.secretKey" (list . "pepper") }}
{{- $_ := set $c "api_keys" (merge (dict "pepper_file" "/etc/gatehouse/secrets/pepper") (default dict (get $c "api_keys"))) }}
{{- end }}
{{- $store := default "" (dig "store" "url" "" $c) }}
{{- $replicas := ternary $v.autoscaling.maxReplicas $v.replicaCount $v.autoscaling.enabled }}
{{- if and (hasPrefix "sqlite" $store) (gt (int $replicas) 1) (not (include "gatehouse.secretKey" (list . "storeUrl"))) }}
{{- fail "SQLite lives in one pod's volume: more than one replica needs a shared store (a postgres:// store URL)" }}
{{- end }}
{{- toJson $c }}
{{- end }}

{{/* A YAML map as TOML: plain keys first, then tables, then arrays of tables; integers stay integers. */}}
{{- define "gatehouse.toml" -}}
{{- include "gatehouse.toml.table" (dict "t" . "path" list) | trimPrefix "\n" }}
{{- end }}

{{- define "gatehouse.toml.isTables" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) }}true{{ end }}
{{- end }}

{{- define "gatehouse.toml.table" -}}
{{- $t := .t }}{{ $path := .path }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := index $t $k }}
{{- if not (or (kindIs "map" $v) (include "gatehouse.toml.isTables" $v) (kindIs "invalid" $v)) }}
{{ include "gatehouse.toml.key" $k }} = {{ include "gatehouse.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := index $t $k }}
{{- if kindIs "map" $v }}
{{- $p := append $path $k }}

[{{ include "gatehouse.toml.path" $p }}]
{{- include "gatehouse.toml.table" (dict "t" $v "path" $p) }}
{{- end }}
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := index $t $k }}
{{- $p := append $path $k }}
{{- if include "gatehouse.toml.isTables" $v }}
{{- range $e := $v }}

[[{{ include "gatehouse.toml.path" $p }}]]
{{- include "gatehouse.toml.table" (dict "t" $e "path" $p) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatehouse.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "gatehouse.toml.path" -}}
{{- $keys := list }}
{{- range . }}{{ $keys = append $keys (include "gatehouse.toml.key" .) }}{{ end }}
{{- join "." $keys }}
{{- end }}

{{- define "gatehouse.toml.value" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "gatehouse.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" . }}{ {{- $m := . }}{{ range $i, $k := keys $m | sortAlpha }}{{ if $i }},{{ end }} {{ include "gatehouse.toml.key" $k }} = {{ include "gatehouse.toml.value" (index $m $k) }}{{ end }} }
{{- else }}{{ fail (printf "config: %v has no TOML form" .) }}
{{- end }}
{{- end }}

{{/* gatehouse.toml, rendered. */}}
{{- define "gatehouse.configToml" -}}
# Rendered by the gatehouse Helm chart from .Values.config; edit the values, not this file.
{{ include "gatehouse.toml" (include "gatehouse.configValues" . | fromJson) }}
{{- end }}

{{/* The config's checksum: a pod annotation, so a changed config rolls the pods (configReload: rollout). */}}
{{- define "gatehouse.configChecksum" -}}
{{- if .Values.existingConfigMap }}{{ .Values.existingConfigMap | sha256sum }}{{ else }}{{ include "gatehouse.configToml" . | sha256sum }}{{ end }}
{{- end }}

{{- define "gatehouse.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: http
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}

{{/* Called with a parent chart's own scope, fail with the calling convention, not a nil error. */}}
{{- define "gatehouse.scopeCheck" -}}
{{- if not (and (kindIs "map" .Values) (hasKey .Values "containerPort") (hasKey .Values "probes")) }}
{{- fail "gatehouse.container and gatehouse.volumes take the gatehouse chart's scope: from a parent chart, include them with .Subcharts.gatehouse, not ." }}
{{- end }}
{{- end }}

{{/*
The Gatehouse container, and (below) the volumes it mounts.

Calling convention. Both templates take this chart's scope: its .Values (with the chart's
defaults), .Chart and .Release. This chart's own Deployment passes `.`. A parent chart that has
this chart as a dependency (set `gatehouse.mode: include` in its values, so this chart renders
only the ConfigMap and Secret the pod mounts, not a Deployment of its own) passes the
subchart's scope, `.Subcharts.gatehouse` (`.Subcharts.<alias>` under an alias), never its own
`.`: the parent's .Values, .Chart and name would give other values and a ConfigMap name that
does not exist. In the parent's pod template:
  metadata:
    annotations:
      checksum/gatehouse-config: {{ include "gatehouse.configChecksum" .Subcharts.gatehouse }}
  spec:
    securityContext:
      fsGroup: 65532            # the group that reads the 0440 secret files
    containers:
      {{- include "gatehouse.container" .Subcharts.gatehouse | nindent 6 }}
      - name: app               # the parent's app, on 127.0.0.1:<gatehouse.app.port>
    volumes:
      {{- include "gatehouse.volumes" .Subcharts.gatehouse | nindent 6 }}
Equivalent: (dict "Values" .Values.gatehouse "Release" .Release "Chart" .Subcharts.gatehouse.Chart).
helm/examples/parent-app is such a parent, rendered and checked by scripts/check-chart.sh.
*/}}
{{- define "gatehouse.container" -}}
{{- include "gatehouse.scopeCheck" . -}}
- name: gatehouse
  image: {{ include "gatehouse.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  # The ConfigMap is mounted as a directory (not a subPath), so the kubelet's updates reach it.
  args: ["serve", "--config", "/etc/gatehouse/config/gatehouse.toml"]
  ports:
    - name: http
      containerPort: {{ .Values.containerPort }}
      protocol: TCP
    {{- if .Values.metrics.enabled }}
    - name: metrics
      containerPort: {{ .Values.metrics.port }}
      protocol: TCP
    {{- end }}
  {{- if or (include "gatehouse.secretKey" (list . "storeUrl")) .Values.extraEnv }}
  env:
    {{- with include "gatehouse.secretKey" (list . "storeUrl") }}
    - name: GATEHOUSE_STORE__URL
      valueFrom:
        secretKeyRef:
          name: {{ include "gatehouse.secretName" $ }}
          key: {{ . }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  livenessProbe:
    {{- include "gatehouse.httpProbe" (dict "probe" .Values.probes.liveness) | nindent 4 }}
  readinessProbe:
    {{- include "gatehouse.httpProbe" (dict "probe" .Values.probes.readiness) | nindent 4 }}
  startupProbe:
    {{- include "gatehouse.httpProbe" (dict "probe" .Values.probes.startup) | nindent 4 }}
  {{- if .Values.lifecycle.preStopSleepSeconds }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ .Values.lifecycle.preStopSleepSeconds }}
  {{- end }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: gatehouse-config
      mountPath: /etc/gatehouse/config
      readOnly: true
    - name: gatehouse-data
      mountPath: /var/lib/gatehouse
    - name: gatehouse-tmp
      mountPath: /tmp
    {{- if include "gatehouse.secretFiles" . }}
    - name: gatehouse-secrets
      mountPath: /etc/gatehouse/secrets
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "gatehouse.volumes" -}}
{{- include "gatehouse.scopeCheck" . -}}
- name: gatehouse-config
  configMap:
    name: {{ default (include "gatehouse.fullname" .) .Values.existingConfigMap }}
- name: gatehouse-data
  {{- if .Values.data.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.data.existingClaim }}
  {{- else }}
  emptyDir:
    {{- toYaml .Values.data.emptyDir | nindent 4 }}
  {{- end }}
- name: gatehouse-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- if include "gatehouse.secretFiles" . }}
- name: gatehouse-secrets
  secret:
    secretName: {{ include "gatehouse.secretName" . }}
    defaultMode: 0440
    items:
      {{- with include "gatehouse.secretKey" (list . "signingKey") }}
      - key: {{ . }}
        path: signing-key
      {{- end }}
      {{- with include "gatehouse.secretKey" (list . "pepper") }}
      - key: {{ . }}
        path: pepper
      {{- end }}
      {{- if .Values.existingSecret.name }}
      {{- range .Values.existingSecret.files }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
      {{- else }}
      {{- range $name, $_ := .Values.secret.files }}
      - key: {{ $name }}
        path: {{ $name }}
      {{- end }}
      {{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
