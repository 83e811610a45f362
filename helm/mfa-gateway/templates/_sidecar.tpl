{{/*
Sidecar mode: named templates an application's chart includes to run the gateway in the application's pod.
The application chart declares this chart as a dependency (mode: sidecar) and calls every template with this
chart's own context, `index .Subcharts "mfa-gateway"`, so that names, values and the ConfigMap match what this
chart renders (helm/examples/sidecar-app is a whole, tested application chart):

{{- $gateway := index .Subcharts "mfa-gateway" }}
spec:
  template:
    metadata:
      annotations:
        {{- include "mfa-gateway.sidecar.podAnnotations" $gateway | nindent 8 }}
    spec:
      securityContext:
        fsGroup: 10001            # the gateway (UID 10001) reads the mounted Secret's files (secretsDefaultMode 0440)
      containers:
        - name: app               # listening on 127.0.0.1:<sidecar.appPort> only
          ...
        {{- include "mfa-gateway.sidecar.container" $gateway | nindent 8 }}
      volumes:
        {{- include "mfa-gateway.sidecar.volumes" $gateway | nindent 8 }}

The application's Service then targets the port named mfa-http. README.md ("Sidecar") has the whole recipe.
*/}}

{{/* The gateway container (a list item for spec.containers); ports are named mfa-http and mfa-metrics. */}}
{{- define "mfa-gateway.sidecar.container" -}}
{{- include "mfa-gateway.container" (dict "root" . "containerName" .Values.sidecar.containerName "portPrefix" "mfa-") }}
{{- end }}

{{/* The volumes the gateway container mounts (list items for spec.volumes, all named mfa-gateway-*). */}}
{{- define "mfa-gateway.sidecar.volumes" -}}
{{- include "mfa-gateway.volumes" . }}
{{- end }}

{{/* Pod annotations that roll the application's pods when the gateway's configuration or Secret changes. */}}
{{- define "mfa-gateway.sidecar.podAnnotations" -}}
checksum/mfa-gateway-config: {{ include "mfa-gateway.checksum.config" . }}
checksum/mfa-gateway-secret: {{ include "mfa-gateway.checksum.secret" . }}
{{- end }}
