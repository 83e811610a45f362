{{/*
Names, labels, the rendered gateway.yaml and the pieces of the pod shared by the Deployment (standalone) and the
sidecar templates (_sidecar.tpl). Every template here takes the chart's own context: in an application chart that
is `index .Subcharts "mfa-gateway"`, never the application's `.`.
*/}}

{{- define "mfa-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mfa-gateway.fullname" -}}
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

{{- define "mfa-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mfa-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mfa-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mfa-gateway.labels" -}}
helm.sh/chart: {{ include "mfa-gateway.chart" . }}
{{ include "mfa-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: mfa-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mfa-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mfa-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mfa-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The folder the image declares as its VOLUME: the default SQLite store lives here. */}}
{{- define "mfa-gateway.dataPath" -}}/var/lib/mfa-gateway{{- end }}
{{- define "mfa-gateway.configPath" -}}/etc/mfa-gateway{{- end }}

{{/*
The gateway's configuration as YAML: .Values.config (already coalesced over values.yaml by Helm, so `false` and
`null` overrides behave) plus the defaults that depend on other values, each filled in only when the key is absent.
*/}}
{{- define "mfa-gateway.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $mount := trimSuffix "/" .Values.secretsMountPath }}
{{- $secrets := get $cfg "secrets" | default dict }}
{{- if not (hasKey $secrets "keyring") }}
{{- $_ := set $secrets "keyring" (printf "file:%s/keyring.json" $mount) }}
{{- end }}
{{- if not (hasKey $secrets "signing_keys") }}
{{- $_ := set $secrets "signing_keys" (printf "file:%s/signing-keys.json" $mount) }}
{{- end }}
{{- $_ := set $cfg "secrets" $secrets }}
{{- $identity := get $cfg "identity" | default dict }}
{{- if and (not (hasKey $identity "users_file")) (eq (get $identity "source" | default "builtin") "builtin") }}
{{- $_ := set $identity "users_file" (printf "%s/users.yaml" $mount) }}
{{- end }}
{{- $_ := set $cfg "identity" $identity }}
{{- $store := get $cfg "store" | default dict }}
{{- if not (hasKey $store "url") }}
{{- $_ := set $store "url" (printf "sqlite+aiosqlite:///%s/mfa-gateway.db" (include "mfa-gateway.dataPath" .)) }}
{{- end }}
{{- $_ := set $cfg "store" $store }}
{{- if eq .Values.mode "sidecar" }}
{{- $upstream := get $cfg "upstream" | default dict }}
{{- if not (hasKey $upstream "url") }}
{{- $_ := set $upstream "url" (printf "http://127.0.0.1:%d" (int .Values.sidecar.appPort)) }}
{{- end }}
{{- $_ := set $cfg "upstream" $upstream }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* A few facts about the rendered configuration, as YAML (read with fromYaml). */}}
{{- define "mfa-gateway.facts" -}}
{{- $cfg := include "mfa-gateway.config" . | fromYaml }}
{{- $storeUrl := dig "store" "url" "" $cfg }}
prefix: {{ dig "prefix" "/_mfa" $cfg | quote }}
port: {{ dig "listen" "port" 9090 $cfg | int }}
adminEnabled: {{ dig "admin" "enabled" true $cfg }}
adminPort: {{ dig "admin" "port" 9464 $cfg | int }}
workers: {{ dig "workers" 1 $cfg | int }}
stateBackend: {{ dig "state" "backend" "memory" $cfg | quote }}
sqlite: {{ hasPrefix "sqlite" $storeUrl }}
upstreamUrl: {{ dig "upstream" "url" "" $cfg | default "" | quote }}
trustedProxies: {{ dig "trusted_proxies" list $cfg | default list | len }}
cookieName: {{ dig "session" "cookie_name" "__Host-mfa_session" $cfg | quote }}
identityHeaders:
  {{- $headers := dig "identity_headers" dict $cfg | default dict }}
  {{- range $kind, $names := dict "user" (list "Remote-User" "X-Auth-Request-User" "X-Auth-User") "email" (list "Remote-Email" "X-Auth-Request-Email") "groups" (list "Remote-Groups") }}
  {{ $kind }}: {{ get $headers $kind | default $names | toJson }}
  {{- end }}
{{- end }}

{{- define "mfa-gateway.secretName" -}}
{{- default (printf "%s-secrets" (include "mfa-gateway.fullname" .)) .Values.existingSecret }}
{{- end }}

{{/* Whether the chart mounts a Secret at secretsMountPath (not when Vault Agent or a CSI volume provide the files). */}}
{{- define "mfa-gateway.mountsSecret" -}}
{{- if or .Values.existingSecret .Values.secrets.create }}true{{ end }}
{{- end }}

{{- define "mfa-gateway.usesClaim" -}}
{{- $facts := include "mfa-gateway.facts" . | fromYaml }}
{{- if and $facts.sqlite .Values.persistence.enabled (eq .Values.mode "standalone") }}true{{ end }}
{{- end }}

{{- define "mfa-gateway.claimName" -}}
{{- default (printf "%s-data" (include "mfa-gateway.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* checksum/* pod annotations: pods roll when the configuration or the chart-managed Secret changes. */}}
{{- define "mfa-gateway.checksumSource.secret" -}}
{{- if .Values.secrets.create }}
{{- toYaml .Values.secrets.files }}
{{- else if .Values.existingSecret }}
existingSecret: {{ .Values.existingSecret }}
{{- else }}
external: {{ .Values.secretsMountPath }}
{{- end }}
{{- end }}

{{- define "mfa-gateway.checksum.config" -}}
{{- include "mfa-gateway.config" . | sha256sum }}
{{- end }}

{{- define "mfa-gateway.checksum.secret" -}}
{{- include "mfa-gateway.checksumSource.secret" . | sha256sum }}
{{- end }}

{{/*
The gateway container. Called with (dict "root" <chart context> "containerName" NAME "portPrefix" PREFIX): the
prefix names its ports (http/metrics standalone, mfa-http/mfa-metrics beside an application whose own ports may
be called http).
*/}}
{{- define "mfa-gateway.container" -}}
{{- $portPrefix := .portPrefix | default "" }}
{{- $containerName := .containerName | default "mfa-gateway" }}
{{- with .root }}
{{- $facts := include "mfa-gateway.facts" . | fromYaml }}
{{- $healthz := printf "%s/healthz" $facts.prefix -}}
- name: {{ $containerName }}
  image: {{ include "mfa-gateway.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "{{ include "mfa-gateway.configPath" . }}/gateway.yaml"]
  ports:
    - name: {{ printf "%shttp" $portPrefix }}
      containerPort: {{ $facts.port }}
      protocol: TCP
    {{- if $facts.adminEnabled }}
    - name: {{ printf "%smetrics" $portPrefix }}
      containerPort: {{ $facts.adminPort }}
      protocol: TCP
    {{- end }}
  {{- with .Values.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: {{ $healthz }}
      port: {{ $facts.port }}
    {{- toYaml (omit .Values.startupProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: {{ $healthz }}
      port: {{ $facts.port }}
    {{- toYaml (omit .Values.livenessProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.readinessProbe.enabled }}
  readinessProbe:
    httpGet:
      path: {{ printf "%s/readyz" $facts.prefix }}
      port: {{ $facts.port }}
    {{- toYaml (omit .Values.readinessProbe "enabled") | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: mfa-gateway-config
      mountPath: {{ include "mfa-gateway.configPath" . }}
      readOnly: true
    {{- if include "mfa-gateway.mountsSecret" . }}
    - name: mfa-gateway-secrets
      mountPath: {{ .Values.secretsMountPath }}
      readOnly: true
    {{- end }}
    - name: mfa-gateway-data
      mountPath: {{ include "mfa-gateway.dataPath" . }}
    - name: mfa-gateway-tmp
      mountPath: /tmp
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}

{{/* The volumes the gateway container mounts (names prefixed so they never clash with an application's). */}}
{{- define "mfa-gateway.volumes" -}}
- name: mfa-gateway-config
  configMap:
    name: {{ include "mfa-gateway.fullname" . }}
{{- if include "mfa-gateway.mountsSecret" . }}
- name: mfa-gateway-secrets
  secret:
    secretName: {{ include "mfa-gateway.secretName" . }}
    defaultMode: {{ .Values.secretsDefaultMode | int }}
{{- end }}
- name: mfa-gateway-data
{{- if include "mfa-gateway.usesClaim" . }}
  persistentVolumeClaim:
    claimName: {{ include "mfa-gateway.claimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: mfa-gateway-tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
