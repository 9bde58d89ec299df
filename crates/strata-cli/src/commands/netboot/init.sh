#!/bin/busybox sh
# strata's netboot initrd (`strata netboot build`): network, facts, enrollment, then
# the machine's disk provisioned from its server and a reboot into it.
# The kernel's initramfs root cannot be pivoted away from, which the sandbox that
# applies the catalog does: first move everything onto a tmpfs and switch to it.
if [ ! -e /.strata-root ]; then
  /bin/busybox mkdir /newroot
  /bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
  for d in /*; do
    [ "$d" = /newroot ] || /bin/busybox cp -a "$d" /newroot/
  done
  /bin/busybox touch /newroot/.strata-root
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
# GNU tar and mke2fs (in /usr) before busybox's.
export PATH=/usr/sbin:/usr/bin:/bin
set -o pipefail
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /var/lib/strata
# The sandbox's overlays want a tmpfs (with xattrs) under them.
mount -t tmpfs -o mode=1777 tmpfs /tmp
say() { echo "strata-netboot: $*"; }
stop() { say "stopped: $*"; sync; sleep 1; poweroff -f; }
server=; token=
for a in $(cat /proc/cmdline); do
  case "$a" in
    strata.server=*) server="${a#strata.server=}" ;;
    strata.token=*) token="${a#strata.token=}" ;;
  esac
done
[ -n "$server" ] || stop "no strata.server= on the kernel command line"
for m in e1000 e1000e virtio_net virtio_pci ata_piix ahci sd_mod virtio_blk overlay; do
  modprobe "$m" 2>/dev/null
done
ip link set lo up
iface=
for n in /sys/class/net/*; do
  n="${n##*/}"; [ "$n" = lo ] || { iface="$n"; break; }
done
[ -n "$iface" ] || stop "no network interface"
ip link set "$iface" up
udhcpc -i "$iface" -n -q -t 10 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 \
  || stop "no DHCP answer on $iface"
mac="$(cat /sys/class/net/"$iface"/address)"
say "network up on $iface ($mac)"
node="m-$(echo "$mac" | tr -d :)"
strata facts --tuples >/tmp/facts.json 2>/tmp/facts.err || stop "strata facts failed: $(cat /tmp/facts.err)"
say "facts gathered"
[ -n "$token" ] || stop "no strata.token= on the kernel command line"
( umask 077; printf '%s\n' "$token" >/tmp/token )
if strata enroll --server "$server" --token-file /tmp/token --node "$node" --plain-http --require-profile >/tmp/enroll.out 2>&1; then
  say "enrolled as $node: $(cat /tmp/enroll.out)"
else
  case "$(cat /tmp/enroll.out)" in
    *"bound to another key"*) stop "enrollment failed: $(cat /tmp/enroll.out) ($node enrolled \
before with another key, and the server did not let this boot take it over: it does only for a \
node that never reported, with a provisioning token; on the server, \`strata nodes forget $node\` \
lets it enroll again)" ;;
    *) stop "enrollment failed: $(cat /tmp/enroll.out)" ;;
  esac
fi
rm -f /tmp/token
# The new tree is built in memory (the disk is written only once it is complete).
mkdir -p /var/cache/strata
mount -t tmpfs -o size=90% tmpfs /var/cache/strata || stop "no memory for the new tree"
export STRATA_CACHE_DIR=/var/cache/strata
say "provisioning"
if strata netboot provision 2>&1 | tee /tmp/provision.out; then
  say "provisioned; rebooting into the disk"
  sync; sleep 1; reboot -f
else
  stop "provisioning failed: $(tail -n 5 /tmp/provision.out)"
fi
