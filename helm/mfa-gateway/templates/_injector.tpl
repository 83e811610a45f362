{{/*
The sidecar injector (mode: injector, or injector.enabled beside the gateway): names, labels, its TLS mode and the injector.yaml it reads. The file's
keys are the injector's contract (listen, image, image_pull_policy, native_sidecar, resources, tls); the webhook
server refuses any other.
*/}}

{{/* "true" when the release renders the injector: an injector-only release (mode: injector), or injector.enabled. */}}
{{- define "mfa-gateway.injector.enabled" -}}
{{- if or (eq .Values.mode "injector") .Values.injector.enabled }}true{{ end }}
{{- end }}

{{/* <fullname>-injector: the Deployment, Service, ConfigMap, ServiceAccount, RBAC and webhook configuration. */}}
{{- define "mfa-gateway.injector.fullname" -}}
{{- printf "%s-injector" (include "mfa-gateway.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/* A name of its own, so that the gateway's Service, PodDisruptionBudget and NetworkPolicy never select it. */}}
{{- define "mfa-gateway.injector.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-injector" (include "mfa-gateway.name" . | trunc 54 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mfa-gateway.injector.labels" -}}
helm.sh/chart: {{ include "mfa-gateway.chart" . }}
{{ include "mfa-gateway.injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: injector
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod label that opts a pod in; the webhook's objectSelector and the applications' NetworkPolicy use it. */}}
{{- define "mfa-gateway.injector.optInLabel" -}}mfa-gateway.io/inject{{- end }}

{{/* generate (the default), certManager or existingSecret. */}}
{{- define "mfa-gateway.injector.tlsMode" -}}
{{- if .Values.injector.tls.certManager.enabled }}certManager
{{- else if .Values.injector.tls.existingSecret }}existingSecret
{{- else }}generate
{{- end }}
{{- end }}

{{/* The Secret with the serving certificate: the injector's own (generate), cert-manager's, or yours. */}}
{{- define "mfa-gateway.injector.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "mfa-gateway.injector.fullname" .)) .Values.injector.tls.existingSecret }}
{{- end }}

{{- define "mfa-gateway.injector.sidecarImage" -}}
{{- default (include "mfa-gateway.image" .) .Values.injector.sidecarImage }}
{{- end }}

{{- define "mfa-gateway.injector.configPath" -}}/etc/mfa-gateway-injector{{- end }}
{{- define "mfa-gateway.injector.port" -}}8443{{- end }}

{{/* The DNS names the API server may use for the Service: <svc>, <svc>.<ns>, <svc>.<ns>.svc. */}}
{{- define "mfa-gateway.injector.dnsNames" -}}
{{- $svc := include "mfa-gateway.injector.fullname" . -}}
- {{ $svc }}
- {{ printf "%s.%s" $svc .Release.Namespace }}
- {{ printf "%s.%s.svc" $svc .Release.Namespace }}
{{- end }}

{{/* injector.yaml, as the injector's contract defines it. */}}
{{- define "mfa-gateway.injector.config" -}}
{{- $name := include "mfa-gateway.injector.fullname" . }}
{{- $tls := dict }}
{{- if eq (include "mfa-gateway.injector.tlsMode" .) "generate" }}
{{- $_ := set $tls "generate" (dict "secret" (include "mfa-gateway.injector.tlsSecretName" .) "service" $name "webhook" $name) }}
{{- else }}
{{- $dir := printf "%s/tls" (include "mfa-gateway.injector.configPath" .) }}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" $dir) }}
{{- end }}
{{- $config := dict
  "listen" (dict "host" "0.0.0.0" "port" (include "mfa-gateway.injector.port" . | int))
  "image" (include "mfa-gateway.injector.sidecarImage" .)
  "image_pull_policy" .Values.injector.sidecarImagePullPolicy
  "native_sidecar" .Values.injector.nativeSidecar
  "resources" .Values.injector.sidecarResources
  "tls" $tls }}
{{- toYaml $config }}
{{- end }}
