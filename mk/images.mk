# Images tier (tests/images, docs/images.md): images/app and images/spark built unchanged with podman
# (the project's configuration: scripts/podman-env.sh, storage in .cache/podman) and their entry points
# run as the chart runs them.
#
#   make test-images                    # stand-in bases (scripts/image-bases.sh), no registry needed
#   make test-images IMAGE_BASES=real   # the real bases from Docker Hub (a machine with registry access)
#   make test-images IMAGE_ENGINE=docker IMAGE_BASES=real   # the same with Docker instead of podman
#
# The stand-ins are tagged with exactly the names in the FROM lines; docs/images.md says how each one
# differs from the real base.

IMAGE_BASES  ?= stand-in
IMAGE_ENGINE ?= podman
export IMAGE_BASES IMAGE_ENGINE

.PHONY: image-bases test-images

image-bases: venv ## stand-in base images for the FROM lines of images/*/Dockerfile (cached; ~2.5 min cold)
	@bash scripts/image-bases.sh

# helm-tool and chart-sync: the tests read uid, command, env and volumes from the rendered chart.
test-images: deps helm-tool chart-sync $(if $(filter real,$(IMAGE_BASES)),,image-bases) ## tier 5: build both images with podman, run each entry point as the chart does
	@$(PYTEST) tests/images -q; $(PYTEST_OK)
