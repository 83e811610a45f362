{{/*
Invalid value combinations stop the render with a message naming the keys and the fix. Included once, from
configmap.yaml (a template of every mode). values.schema.json checks types; this checks what a schema cannot.
*/}}
{{- define "mfa-gateway.validate" -}}
{{- $v := .Values }}

{{- /* An injector-only release runs no gateway: the gateway's values would do nothing, so they are refused, and the
gateway's own guards (a key source, shared state for replicas...) do not apply. */}}
{{- if eq $v.mode "injector" }}
{{- $unused := include "mfa-gateway.validate.gatewayObjects" . | splitList ", " | compact }}
{{- if $v.existingSecret }}{{ $unused = append $unused "existingSecret" }}{{ end }}
{{- if $v.secrets.create }}{{ $unused = append $unused "secrets.create" }}{{ end }}
{{- if $v.secrets.external }}{{ $unused = append $unused "secrets.external" }}{{ end }}
{{- if $unused }}
{{- fail (printf "mfa-gateway: mode injector renders only the sidecar injector, no gateway of its own; remove %s. The injected gateways read their keys from the Secret each pod names in mfa-gateway.io/secret." (join ", " $unused)) }}
{{- end }}
{{- else }}
{{- include "mfa-gateway.validate.gateway" . }}
{{- end }}
{{- include "mfa-gateway.validate.injector" . }}
{{- end }}

{{/* The gateway's own objects switched on, as "ingress.enabled, networkPolicy.enabled": the modes without a gateway
Deployment (sidecar, injector) refuse them. */}}
{{- define "mfa-gateway.validate.gatewayObjects" -}}
{{- $on := list }}
{{- range $key := list "ingress" "protectedIngress" "traefikMiddleware" "autoscaling" "podDisruptionBudget" "networkPolicy" "serviceMonitor" }}
{{- if (get $.Values $key).enabled }}{{ $on = append $on (printf "%s.enabled" $key) }}{{ end }}
{{- end }}
{{- join ", " $on }}
{{- end }}

{{/* The gateway's guards (modes standalone and sidecar). */}}
{{- define "mfa-gateway.validate.gateway" -}}
{{- $facts := include "mfa-gateway.facts" . | fromYaml }}
{{- $v := .Values }}
{{- $sidecar := eq $v.mode "sidecar" }}

{{- /* Key material: exactly one source. */}}
{{- $sources := 0 }}
{{- if $v.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if $v.secrets.create }}{{ $sources = add1 $sources }}{{ end }}
{{- if $v.secrets.external }}{{ $sources = add1 $sources }}{{ end }}
{{- if eq $sources 0 }}
{{- fail "mfa-gateway: no key material configured. Set existingSecret (a Secret with keyring.json and signing-keys.json), or secrets.external: true (files rendered into secretsMountPath by Vault Agent or a CSI volume), or, for development only, secrets.create: true with secrets.files." }}
{{- end }}
{{- if gt $sources 1 }}
{{- fail "mfa-gateway: existingSecret, secrets.create and secrets.external are alternatives; set exactly one." }}
{{- end }}
{{- if $v.secrets.create }}
{{- range $file := list "keyring.json" "signing-keys.json" }}
{{- if not (get $v.secrets.files $file) }}
{{- fail (printf "mfa-gateway: secrets.create needs secrets.files.%s (mfa-gateway keygen %s --kid ID)" $file (ternary "keyring" "signing" (eq $file "keyring.json"))) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Several processes share state only through Redis and PostgreSQL. */}}
{{- if and (gt (int $facts.workers) 1) (ne $facts.stateBackend "redis") }}
{{- fail "mfa-gateway: config.workers > 1 needs config.state.backend: redis (memory state is per process)." }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.replicaCount) 1) }}
{{- fail "mfa-gateway: autoscaling.enabled and replicaCount > 1 conflict: the HPA owns the replica count. Leave replicaCount at 1 and set autoscaling.minReplicas." }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "mfa-gateway: autoscaling.minReplicas is larger than autoscaling.maxReplicas." }}
{{- end }}
{{- $several := and (not $sidecar) (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) }}
{{- if and $several (ne $facts.stateBackend "redis") }}
{{- fail "mfa-gateway: replicaCount > 1 and autoscaling need config.state.backend: redis. Memory state is per process: replay marks, lockouts and sign-outs would not be shared between pods." }}
{{- end }}
{{- if and $several $facts.sqlite }}
{{- fail "mfa-gateway: replicaCount > 1 and autoscaling need a PostgreSQL store (config.store.url: postgresql+asyncpg://USER@HOST:PORT/DB). SQLite is one file in one pod." }}
{{- end }}

{{- /* Sidecar: the application's chart owns the pod, its Service and its Ingress. */}}
{{- if $sidecar }}
{{- $owned := include "mfa-gateway.validate.gatewayObjects" . }}
{{- if $owned }}
{{- fail (printf "mfa-gateway: mode sidecar renders no Deployment, Service or Ingress of its own; turn off %s here and set them up in the application's chart (its Service targets the gateway's port)." $owned) }}
{{- end }}
{{- if $facts.sqlite }}
{{- fail "mfa-gateway: mode sidecar needs a PostgreSQL store (config.store.url: postgresql+asyncpg://USER@HOST:PORT/DB): every application pod runs its own gateway, and SQLite would give each pod its own enrollments." }}
{{- end }}
{{- end }}

{{- /* Forward-auth answers only trusted proxies. */}}
{{- if and (or $v.protectedIngress.enabled $v.traefikMiddleware.enabled) (eq (int $facts.trustedProxies) 0) }}
{{- fail "mfa-gateway: protectedIngress and traefikMiddleware need config.trusted_proxies (the ingress controller's pod CIDR): {prefix}/auth answers nobody else (403 untrusted_proxy)." }}
{{- end }}
{{- if and $v.protectedIngress.enabled (or (not $v.protectedIngress.host) (not $v.protectedIngress.service.name)) }}
{{- fail "mfa-gateway: protectedIngress needs protectedIngress.host and protectedIngress.service.name (the application's host and Service)." }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.hosts) }}
{{- fail "mfa-gateway: ingress.enabled needs at least one entry in ingress.hosts." }}
{{- end }}

{{- if and $v.serviceMonitor.enabled (not $facts.adminEnabled) }}
{{- fail "mfa-gateway: serviceMonitor.enabled needs config.admin.enabled: true (the metrics listener)." }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "mfa-gateway: podDisruptionBudget takes minAvailable or maxUnavailable, not both; set the other to null." }}
{{- end }}
{{- end }}

{{/* The sidecar injector's guards (mode injector, or injector.enabled). */}}
{{- define "mfa-gateway.validate.injector" -}}
{{- $v := .Values }}
{{- $sidecar := eq $v.mode "sidecar" }}
{{- $inj := $v.injector }}
{{- $optIn := include "mfa-gateway.injector.optInLabel" . }}
{{- if include "mfa-gateway.injector.enabled" . }}
{{- if $sidecar }}
{{- fail "mfa-gateway: injector.enabled needs mode: standalone. The injector is cluster-wide (a MutatingWebhookConfiguration): install it from a release of its own (mode: injector), not from an application's chart." }}
{{- end }}
{{- $image := include "mfa-gateway.injector.sidecarImage" . }}
{{- if or (hasSuffix ":latest" $image) (not (or (contains "@" $image) (contains ":" (last (splitList "/" $image))))) }}
{{- fail (printf "mfa-gateway: injector.sidecarImage %q needs a tag or a digest, not none or :latest (REGISTRY/mfa-gateway:0.1.0, or ...@sha256:...): every node must run the same gateway. It defaults to image.repository and image.tag." $image) }}
{{- end }}
{{- if or (hasKey ($v.commonLabels | default dict) $optIn) (hasKey ($inj.podLabels | default dict) $optIn) }}
{{- fail (printf "mfa-gateway: commonLabels and injector.podLabels must not set %s: the injector's own pods would be sent to the injector, and none could start while it is down." $optIn) }}
{{- end }}
{{- if and $inj.tls.certManager.enabled $inj.tls.existingSecret }}
{{- fail "mfa-gateway: injector.tls.certManager.enabled and injector.tls.existingSecret are alternatives; set one (or neither: the injector makes its own certificate)." }}
{{- end }}
{{- if and $inj.tls.existingSecret (not $inj.tls.caBundle) }}
{{- fail "mfa-gateway: injector.tls.existingSecret needs injector.tls.caBundle (base64 of the PEM CA that signed its tls.crt): the API server checks the injector's certificate against it." }}
{{- end }}
{{- if and $inj.tls.caBundle (not $inj.tls.existingSecret) }}
{{- fail "mfa-gateway: injector.tls.caBundle goes with injector.tls.existingSecret only; otherwise the injector or cert-manager's cainjector writes the caBundle." }}
{{- end }}
{{- if and (not $inj.tls.certManager.enabled) $inj.tls.certManager.issuerRef.name }}
{{- fail "mfa-gateway: injector.tls.certManager.issuerRef needs injector.tls.certManager.enabled: true." }}
{{- end }}
{{- if and $inj.nativeSidecar (not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "mfa-gateway: injector.nativeSidecar needs Kubernetes 1.29 or later (init containers with restartPolicy: Always); this cluster is %s. Set it to false." .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and $inj.podDisruptionBudget.enabled (not (kindIs "invalid" $inj.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $inj.podDisruptionBudget.maxUnavailable)) }}
{{- fail "mfa-gateway: injector.podDisruptionBudget takes minAvailable or maxUnavailable, not both; set the other to null." }}
{{- end }}
{{- else if $inj.appNetworkPolicy.namespaces }}
{{- fail "mfa-gateway: injector.appNetworkPolicy.namespaces needs the injector (mode: injector, or injector.enabled). Without the injector (mfa-gateway inject -f), apply config/injected-app-networkpolicy.yaml in each namespace yourself." }}
{{- end }}
{{- end }}
