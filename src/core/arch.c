/*
 * arch.c — the table of architectures built in.
 *
 * Everything that depends on which architectures exist walks this table:
 * detection by anchor tensor and the "arch" key (model_config.c), the keys
 * one architecture refuses because another owns them, the engine calls
 * (engine.c).  Adding an architecture is its file (arch_NAME.c with a
 * const R4ArchOps r4_arch_NAME) and one line here; docs/architecture.md.
 * Order matters only for detection messages and for the first anchor
 * found: keep the older architectures first.
 */
#include "rai4eo/arch.h"

extern const R4ArchOps r4_arch_vit;
extern const R4ArchOps r4_arch_resnet;

static const R4ArchOps *const table[] = {
	&r4_arch_vit,
	&r4_arch_resnet,
	NULL
};

const R4ArchOps *const *
r4_arch_table(void)
{
	return table;
}
