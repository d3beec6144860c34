{{- /*
The spec of one Spark job's SparkApplication (or of a ScheduledSparkApplication's template), from
pipeline.* and the job's overrides. Called with (dict "root" $ "job" <name> "cfg" <pipeline.jobs.<name>
or erasure> "restart" <restartPolicy> "arguments" <list> "streaming" <bool>): a streaming job gets the
preStop hook that stops its queries between micro-batches; a batch job just ends.
*/ -}}
{{- define "me.spark.appSpec" -}}
{{- $root := .root }}
{{- $streaming := .streaming }}
{{- $job := .job }}
{{- $cfg := .cfg }}
{{- $restart := .restart }}
{{- $p := $root.Values.pipeline }}
{{- $driver := merge (deepCopy (default dict $cfg.driver)) $p.driver }}
{{- $executor := merge (deepCopy (default dict $cfg.executor)) $p.executor }}
{{- $component := printf "spark-%s" $job }}
{{- $podLabels := include "me.labels" (list $root $component) | fromYaml }}
{{- $_ := set $podLabels "marketing-engine.io/workload" "spark" }}
{{- $driverOnly := $p.driverOnly.enabled }}
{{- $conf := dict
  "spark.driver.minMemoryOverhead" $driver.minMemoryOverhead
  "spark.driver.memoryOverheadFactor" $p.memoryOverheadFactor
  "spark.ui.showConsoleProgress" "false"
  "spark.sql.session.timeZone" "UTC"
}}
{{- if not $driverOnly }}
{{- $_ := set $conf "spark.executor.minMemoryOverhead" $executor.minMemoryOverhead }}
{{- $_ := set $conf "spark.executor.memoryOverheadFactor" $p.memoryOverheadFactor }}
{{- end }}
{{- $conf = merge (deepCopy (default dict $cfg.sparkConf)) (deepCopy $p.sparkConf) $conf }}
{{- $env := list
  (dict "name" "PYTHONPATH" "value" "/opt/marketing-engine")
  (dict "name" "KAFKA_BOOTSTRAP_SERVERS" "value" $root.Values.kafka.bootstrapServers)
  (dict "name" "SCHEMA_REGISTRY_URL" "value" $root.Values.kafka.schemaRegistryUrl)
  (dict "name" "DELTA_ROOT" "value" $root.Values.delta.mountPath)
  (dict "name" "TRIGGER_INTERVAL" "value" $p.triggerInterval)
  (dict "name" "STARTING_OFFSETS" "value" $p.startingOffsets)
  (dict "name" "MAX_OFFSETS_PER_TRIGGER" "value" (toString $p.maxOffsetsPerTrigger))
  (dict "name" "LOG_LEVEL" "value" $root.Values.logging.level)
}}
{{- if $p.mallocArenaMax }}
{{- /* glibc gives every thread that allocates its own 64 MiB arena (up to 8 x cores): a JVM's Netty, Kafka
and Delta threads then hold far more native memory than they use (bench/bench_memory.py). */}}
{{- $env = append $env (dict "name" "MALLOC_ARENA_MAX" "value" (toString $p.mallocArenaMax)) }}
{{- end }}
{{- range $k, $v := (default dict $cfg.env) }}
{{- $env = append $env (dict "name" $k "value" (toString $v)) }}
{{- end }}
{{- $mounts := list
  (dict "name" "delta" "mountPath" $root.Values.delta.mountPath)
  (dict "name" "tmp" "mountPath" "/tmp")
  (dict "name" "work-dir" "mountPath" "/opt/spark/work-dir")
}}
{{- $podSecurity := include "me.pod.securityContext" (dict "uid" 185 "gid" 185 "fsGroup" (include "me.delta.fsGroup" $root | int)) | fromYaml }}
{{- $containerSecurity := include "me.container.securityContext" (dict "readOnlyRootFilesystem" true) | fromYaml -}}
type: Python
mode: cluster
sparkVersion: {{ $p.sparkVersion | quote }}
image: {{ include "me.image" (list $root "spark") }}
imagePullPolicy: {{ $root.Values.images.pullPolicy }}
mainApplicationFile: {{ printf "local:///opt/marketing-engine/spark/jobs/%s.py" $job }}
restartPolicy:
  {{- toYaml $restart | nindent 2 }}
{{- with .arguments }}
arguments:
  {{- toYaml . | nindent 2 }}
{{- end }}
sparkConf:
  {{- range $k, $v := $conf }}
  {{ $k }}: {{ toString $v | quote }}
  {{- end }}
volumes:
  - name: delta
    persistentVolumeClaim:
      claimName: {{ include "me.delta.claimName" $root }}
  - name: tmp
    emptyDir:
      sizeLimit: 1Gi
  - name: work-dir
    emptyDir:
      sizeLimit: 256Mi
driver:
  cores: {{ $driver.cores }}
  coreRequest: {{ $driver.coreRequest | quote }}
  coreLimit: {{ $driver.coreLimit | quote }}
  memory: {{ $driver.memory | quote }}
  {{- with $driver.memoryLimit }}
  memoryLimit: {{ . | quote }}
  {{- end }}
  {{- with $driver.javaOptions }}
  javaOptions: {{ . | quote }}
  {{- end }}
  {{- if $driverOnly }}
  kubernetesMaster: {{ $p.driverOnly.master | quote }}
  {{- end }}
  serviceAccount: {{ $p.serviceAccount }}
  labels:
    {{- toYaml $podLabels | nindent 4 }}
  env:
    {{- toYaml $env | nindent 4 }}
  volumeMounts:
    {{- toYaml $mounts | nindent 4 }}
  podSecurityContext:
    {{- toYaml $podSecurity | nindent 4 }}
  securityContext:
    {{- toYaml $containerSecurity | nindent 4 }}
  {{- if $streaming }}
  # Kubernetes' SIGTERM reaches spark-submit's JVM, not the job's Python (its child): the hook
  # signals the Python job first, which stops its queries between micro-batches and exits 0
  # (spark/prestop.py). The grace period covers the hook's wait (50 s) for a batch to commit.
  terminationGracePeriodSeconds: 60
  lifecycle:
    preStop:
      exec:
        command: ["/opt/venv/bin/python", "-m", "spark.prestop"]
  {{- end }}
{{- if $driverOnly }}
# Unused in driver-only mode (no executor pods); the CRD requires the section.
executor:
  instances: 1
{{- else }}
executor:
  instances: {{ $executor.instances }}
  cores: {{ $executor.cores }}
  coreRequest: {{ $executor.coreRequest | quote }}
  coreLimit: {{ $executor.coreLimit | quote }}
  memory: {{ $executor.memory | quote }}
  {{- with $executor.memoryLimit }}
  memoryLimit: {{ . | quote }}
  {{- end }}
  {{- with $executor.javaOptions }}
  javaOptions: {{ . | quote }}
  {{- end }}
  deleteOnTermination: true
  labels:
    {{- toYaml $podLabels | nindent 4 }}
  env:
    {{- toYaml $env | nindent 4 }}
  volumeMounts:
    {{- toYaml $mounts | nindent 4 }}
  podSecurityContext:
    {{- toYaml $podSecurity | nindent 4 }}
  securityContext:
    {{- toYaml $containerSecurity | nindent 4 }}
{{- end }}
{{- end }}
