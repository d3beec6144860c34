{{/*
Pod template partials: the restricted Pod Security Standard for every pod of the chart.
Pod level: non-root with a fixed uid/gid (images may name their user; the kubelet can only verify
numbers), RuntimeDefault seccomp. Container level: no privilege escalation, no capabilities,
read-only root filesystem unless the caller says otherwise (ksqlDB, see templates/ksqldb.yaml).
*/}}

{{/* Pod securityContext. Call with (dict "uid" 10001 "gid" 10001 ["fsGroup" 185]); fsGroup defaults to gid. */}}
{{- define "me.pod.securityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
fsGroup: {{ default .gid .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container securityContext. Call with (dict "readOnlyRootFilesystem" true). */}}
{{- define "me.container.securityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem }}
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Common pod spec head for our app image (uid 10001, images/app/Dockerfile): service account token off
unless asked, security context, image pull policy comes with the container. Call with
(dict "root" $ "automountToken" false ["serviceAccountName" name] ["fsGroup" gid]).
*/}}
{{- define "me.pod.appSpecHead" -}}
{{- if .serviceAccountName }}
serviceAccountName: {{ .serviceAccountName }}
{{- end }}
automountServiceAccountToken: {{ .automountToken }}
enableServiceLinks: false
securityContext:
  {{- include "me.pod.securityContext" (dict "uid" 10001 "gid" 10001 "fsGroup" .fsGroup) | nindent 2 }}
{{- end }}

{{/* The group owning the Delta volume: every pod mounting it (Spark 185, the seed) uses it as fsGroup, so
the kubelet never re-chowns the volume back and forth between pods of different groups. */}}
{{- define "me.delta.fsGroup" -}}185{{- end }}

{{/* A writable /tmp for read-only root filesystems. */}}
{{- define "me.volume.tmp" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
{{- define "me.volumeMount.tmp" -}}
- name: tmp
  mountPath: /tmp
{{- end }}
