/*
 * A stand-in for netifd's ubus side, for tests/openwrt/real.sh only: one ubus object
 * network.interface.NAME per NAME on the command line, whose `status` method answers the JSON in
 * DIR/NAME.json (what `ubus call network.interface.NAME status` prints on a router). The test
 * edits those files and sends netifd's events itself (`ubus call service event`), as netifd
 * does: interface.update for every change but a down, interface.down for a down.
 *   netifd-standin DIR NAME...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libubus.h>
#include <libubox/blobmsg_json.h>

#define PREFIX "network.interface."

static struct blob_buf b;
static const char *dir;

static int status_cb(struct ubus_context *ctx, struct ubus_object *obj,
		     struct ubus_request_data *req, const char *method, struct blob_attr *msg)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.json", dir, obj->name + strlen(PREFIX));
	blob_buf_init(&b, 0);
	if (!blobmsg_add_json_from_file(&b, path))
		return UBUS_STATUS_NOT_FOUND;
	ubus_send_reply(ctx, req, b.head);
	return 0;
}

static const struct ubus_method methods[] = { UBUS_METHOD_NOARG("status", status_cb) };
static struct ubus_object_type type = UBUS_OBJECT_TYPE("netifd_iface", methods);

int main(int argc, char **argv)
{
	struct ubus_context *ctx;
	int i;

	if (argc < 3)
		return 2;
	dir = argv[1];
	uloop_init();
	ctx = ubus_connect(NULL);
	if (!ctx)
		return 1;
	ubus_add_uloop(ctx);
	for (i = 2; i < argc; i++) {
		struct ubus_object *obj = calloc(1, sizeof(*obj));
		char *name = malloc(strlen(PREFIX) + strlen(argv[i]) + 1);

		sprintf(name, PREFIX "%s", argv[i]);
		obj->name = name;
		obj->type = &type;
		obj->methods = methods;
		obj->n_methods = ARRAY_SIZE(methods);
		if (ubus_add_object(ctx, obj))
			return 1;
	}
	uloop_run();
	return 0;
}
