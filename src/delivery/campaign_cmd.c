/* placeholder: being written */
#include "commands.h"
int campaign_cmd(int argc, char **argv) { (void)argc; (void)argv; return 1; }
